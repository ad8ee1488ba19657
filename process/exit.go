package process

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
)

// oomSignatures are what backends print when an allocation fails, in
// lower case: CUDA, ROCm/HIP, Vulkan and Metal (through ggml or PyTorch),
// the C and C++ runtimes, and vLLM's own checks.
var oomSignatures = []string{
	"out of memory",             // CUDA error: out of memory; torch.OutOfMemoryError: CUDA out of memory; HIP out of memory
	"outofmemory",               // torch.cuda.OutOfMemoryError, hipErrorOutOfMemory
	"out_of_memory",             // CUDA_ERROR_OUT_OF_MEMORY
	"outofdevicememory",         // Vulkan: ErrorOutOfDeviceMemory
	"failed to allocate",        // ggml: failed to allocate CUDA0 buffer / buffer for kv cache / Metal buffer
	"unable to allocate",        // llama.cpp: unable to allocate backend buffer
	"cannot allocate memory",    // ENOMEM
	"insufficient memory",       // ggml_aligned_malloc: insufficient memory
	"not enough memory",         // generic
	"bad_alloc",                 // std::bad_alloc
	"cudamalloc",                // cudaMalloc failed
	"cudaerrormemoryallocation", // CUDA runtime error name
	"no available memory",       // vLLM: No available memory for the cache blocks
	"kv cache memory",           // vLLM: ... larger than the available KV cache memory
	"free memory on device",     // vLLM: Free memory on device ... is less than desired
}

// OutOfMemory reports whether a process that exited with exit (its
// ExitErr), having written output last (its Tail), looks to have run out
// of memory: its output says an allocation failed, or it was killed by a
// SIGKILL, which is how the kernel's out-of-memory killer ends a process.
// Ask it only about a process that exited on its own: one stopped with
// SIGKILL on purpose looks the same.
func OutOfMemory(exit error, output []string) bool {
	if ws, ok := waitStatus(exit); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		return true
	}
	for _, line := range output {
		l := strings.ToLower(line)
		for _, sig := range oomSignatures {
			if strings.Contains(l, sig) {
				return true
			}
		}
	}
	return false
}

// DescribeExit says how a process ended, for people: "exit status 1",
// "exit status 0", "killed by signal 9 (killed)".
func DescribeExit(exit error) string {
	if exit == nil {
		return "exit status 0"
	}
	if ws, ok := waitStatus(exit); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%v)", ws.Signal(), ws.Signal())
	}
	return exit.Error()
}

func waitStatus(exit error) (syscall.WaitStatus, bool) {
	var ee *exec.ExitError
	if !errors.As(exit, &ee) {
		return 0, false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ws, ok
}
