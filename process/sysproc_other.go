//go:build !linux

package process

import "syscall"

// sysProcAttr puts the backend in its own process group. Pdeathsig is
// Linux-only: elsewhere a backend, leader included, outlives a hotswap
// killed unless the guard (guard.go) kills its group, so set
// ExecStarter.Guard there.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
