package process

import "syscall"

// sysProcAttr puts the backend in its own process group, so that stopping
// it reaches everything it spawned, and asks the kernel to SIGKILL it if
// hotswap dies without stopping it (unless a test asks for macOS's ways:
// noPdeathsig).
func sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if !noPdeathsig {
		a.Pdeathsig = syscall.SIGKILL
	}
	return a
}
