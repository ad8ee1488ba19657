//go:build linux || darwin || freebsd || netbsd || openbsd

package proxy

import "syscall"

// fileLimit is the process's open-file limit (soft), 0 if unknown. Go
// raises it to the hard limit when a program starts (Go 1.19), so this is
// usually the hard limit, which is what the operator can still change.
func fileLimit() uint64 {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil {
		return 0
	}
	return uint64(r.Cur)
}
