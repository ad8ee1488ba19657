//go:build linux && cgo

package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stddef.h>

// The few CUDA driver API types and entry points used here, written from
// their documented signatures: the CUDA headers are not needed to build.
typedef int CUresult;                 // CUDA_SUCCESS is 0
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef unsigned long long CUdeviceptr; // the _v2 API's 64-bit pointer

typedef CUresult (*cuInit_t)(unsigned int flags);
typedef CUresult (*cuDeviceGet_t)(CUdevice *dev, int ordinal);
typedef CUresult (*cuDevicePrimaryCtxRetain_t)(CUcontext *ctx, CUdevice dev);
typedef CUresult (*cuCtxSetCurrent_t)(CUcontext ctx);
typedef CUresult (*cuMemAlloc_v2_t)(CUdeviceptr *dptr, size_t bytes);
typedef CUresult (*cuMemsetD8_v2_t)(CUdeviceptr dptr, unsigned char value, size_t n);
typedef CUresult (*cuCtxSynchronize_t)(void);
typedef CUresult (*cuGetErrorString_t)(CUresult err, const char **str);

static cuGetErrorString_t errString;

// fail writes "step: CUDA error N (text)" into msg and returns 1.
static int fail(char *msg, size_t len, const char *step, CUresult r) {
	const char *s = NULL;
	if (errString == NULL || errString(r, &s) != 0 || s == NULL) {
		s = "no description";
	}
	snprintf(msg, len, "%s: CUDA error %d (%s)", step, r, s);
	return 1;
}

// hog allocates bytes on GPU ordinal through the device's primary context
// and writes to all of it. It returns 0 on success, else 1 with msg set.
// The memory stays allocated: the process exiting is what frees it.
static int hog(int ordinal, size_t bytes, char *msg, size_t len) {
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
	if (lib == NULL) {
		snprintf(msg, len, "load the CUDA driver libcuda.so.1: %s", dlerror());
		return 1;
	}
	cuInit_t init = (cuInit_t)dlsym(lib, "cuInit");
	cuDeviceGet_t deviceGet = (cuDeviceGet_t)dlsym(lib, "cuDeviceGet");
	cuDevicePrimaryCtxRetain_t retain = (cuDevicePrimaryCtxRetain_t)dlsym(lib, "cuDevicePrimaryCtxRetain");
	cuCtxSetCurrent_t setCurrent = (cuCtxSetCurrent_t)dlsym(lib, "cuCtxSetCurrent");
	cuMemAlloc_v2_t alloc = (cuMemAlloc_v2_t)dlsym(lib, "cuMemAlloc_v2");
	cuMemsetD8_v2_t memset8 = (cuMemsetD8_v2_t)dlsym(lib, "cuMemsetD8_v2");
	cuCtxSynchronize_t sync = (cuCtxSynchronize_t)dlsym(lib, "cuCtxSynchronize");
	errString = (cuGetErrorString_t)dlsym(lib, "cuGetErrorString");
	if (!init || !deviceGet || !retain || !setCurrent || !alloc || !memset8 || !sync) {
		snprintf(msg, len, "libcuda.so.1 lacks a CUDA driver API entry point this program needs");
		return 1;
	}
	CUresult r;
	if ((r = init(0)) != 0) return fail(msg, len, "cuInit", r);
	CUdevice dev;
	if ((r = deviceGet(&dev, ordinal)) != 0) return fail(msg, len, "cuDeviceGet", r);
	CUcontext ctx;
	if ((r = retain(&ctx, dev)) != 0) return fail(msg, len, "cuDevicePrimaryCtxRetain", r);
	if ((r = setCurrent(ctx)) != 0) return fail(msg, len, "cuCtxSetCurrent", r);
	CUdeviceptr p;
	if ((r = alloc(&p, bytes)) != 0) return fail(msg, len, "cuMemAlloc_v2", r);
	// Touch every byte, so no driver could count the memory as reserved
	// but not yet in use.
	if ((r = memset8(p, 0xA5, bytes)) != 0) return fail(msg, len, "cuMemsetD8_v2", r);
	if ((r = sync()) != 0) return fail(msg, len, "cuCtxSynchronize", r);
	return 0;
}
*/
import "C"

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func main() {
	mib := flag.Int("mib", 1024, "MiB of GPU memory to allocate and hold")
	device := flag.Int("device", 0, "CUDA device ordinal")
	flag.Parse()
	if *mib <= 0 || *device < 0 {
		fmt.Fprintln(os.Stderr, "cudahog: -mib must be > 0 and -device >= 0")
		os.Exit(2)
	}
	// The primary context is made current on this thread; keep the
	// goroutine on it so nothing else sees a thread without it.
	runtime.LockOSThread()
	var msg [512]C.char
	if C.hog(C.int(*device), C.size_t(*mib)<<20, &msg[0], C.size_t(len(msg))) != 0 {
		fmt.Fprintf(os.Stderr, "cudahog: %s\n", C.GoString(&msg[0]))
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	// Exiting frees the memory: the driver tears the context down.
}
