package main

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pageCacheControl says dropCache and residentShare work here.
const pageCacheControl = true

// dropCache asks the kernel to drop path's pages from the page cache
// (POSIX_FADV_DONTNEED; pages mapped by a running process, or dirty, stay).
func dropCache(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		tb.Fatal(err)
	}
}

// residentShare is the share of path's pages in the page cache (mincore).
func residentShare(tb testing.TB, path string) float64 {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		tb.Fatalf("%s: %v (size %d)", path, err, fi.Size())
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Munmap(mem)
	page := os.Getpagesize()
	vec := make([]byte, (len(mem)+page-1)/page)
	// x/sys has no Mincore wrapper in the version go.mod holds.
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)),
		uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		tb.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return float64(n) / float64(len(vec))
}
