package process

import "syscall"

// sysProcAttr puts the backend in its own process group, so that stopping
// it reaches everything it spawned, and asks the kernel to SIGKILL it if
// hotswap dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
