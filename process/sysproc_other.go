//go:build !linux

package process

import "syscall"

// sysProcAttr puts the backend in its own process group. Pdeathsig is
// Linux-only; elsewhere hotswap relies on stopping its backends on the way
// out.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
