package readahead

import (
	"os"

	"golang.org/x/sys/unix"
)

// ioprio_set's constants (linux/ioprio.h); x/sys has the call's number only.
const (
	ioprioWhoProcess = 1
	ioprioClassIdle  = 3
	ioprioClassShift = 13
)

// idlePriority sets the calling thread's I/O class to idle. A failure
// (seccomp, say) leaves the normal class: the read-ahead still works.
func idlePriority() {
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(unix.Gettid()), ioprioClassIdle<<ioprioClassShift)
}

// ioPriority returns the calling thread's I/O priority (for tests).
func ioPriority() int {
	r, _, _ := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(unix.Gettid()), 0)
	return int(r)
}

// willNeed hints the kernel to start reading the first n bytes of f.
func willNeed(f *os.File, n int64) {
	_ = unix.Fadvise(int(f.Fd()), 0, n, unix.FADV_WILLNEED)
}
