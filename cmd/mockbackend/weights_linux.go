package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropFromCache asks the kernel to drop f's clean pages from the page cache.
func dropFromCache(f *os.File) { _ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) }
