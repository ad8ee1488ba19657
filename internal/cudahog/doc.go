// Command cudahog takes a given amount of memory on a GPU and holds it until
// it is killed, so that tests can check what the GPU memory probe (package
// probe, NVML) reports for a process that really uses VRAM.
//
//	cudahog -mib 2048 [-device 0]
//
// It prints "ready" on stdout once the memory is allocated, then waits for
// SIGTERM, SIGINT or SIGKILL. It loads the CUDA driver (libcuda.so.1) at run
// time, so it builds without the CUDA toolkit; it needs linux and cgo, and
// elsewhere it only says that it cannot run.
package main
