//go:build !darwin

package process

// watchExit would tell the guard when hotswap exits. Off macOS it does
// not: on Linux, Pdeathsig ends each backend's leader and the guard's pipe
// ending tells it the rest, so gone is nil (never).
func watchExit(pid int) (gone <-chan struct{}, stop func(), err error) {
	return nil, func() {}, nil
}
