//go:build darwin

package process

import (
	"fmt"
	"syscall"
)

// watchExit closes gone when process pid exits, as kqueue's EVFILT_PROC
// NOTE_EXIT tells it; stop ends the watch. A pid that is already gone (or
// never was) is gone at once. It is the guard's second way of telling that
// hotswap died, beside its end of the pipe closing.
func watchExit(pid int) (gone <-chan struct{}, stop func(), err error) {
	kq, err := syscall.Kqueue()
	if err != nil {
		return nil, nil, fmt.Errorf("kqueue: %w", err)
	}
	syscall.CloseOnExec(kq)
	// stop writes to this pipe, which the same kqueue watches.
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		syscall.Close(kq)
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	syscall.CloseOnExec(p[0])
	syscall.CloseOnExec(p[1])
	closeAll := func() { syscall.Close(kq); syscall.Close(p[0]); syscall.Close(p[1]) }
	ch := make(chan struct{})
	var evs [2]syscall.Kevent_t
	syscall.SetKevent(&evs[0], pid, syscall.EVFILT_PROC, syscall.EV_ADD|syscall.EV_ONESHOT)
	evs[0].Fflags = syscall.NOTE_EXIT
	syscall.SetKevent(&evs[1], p[0], syscall.EVFILT_READ, syscall.EV_ADD)
	if _, err := syscall.Kevent(kq, evs[:], nil, nil); err == syscall.ESRCH {
		close(ch) // already gone
		closeAll()
		return ch, func() {}, nil
	} else if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("kevent: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var out [2]syscall.Kevent_t
		for {
			n, err := syscall.Kevent(kq, nil, out[:], nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return // the pipe still tells
			}
			for _, ev := range out[:n] {
				if ev.Filter == syscall.EVFILT_PROC && ev.Fflags&syscall.NOTE_EXIT != 0 {
					close(ch)
					return
				}
				if ev.Filter == syscall.EVFILT_READ {
					return // stop
				}
			}
		}
	}()
	return ch, func() {
		syscall.Write(p[1], []byte{0})
		<-done
		closeAll()
	}, nil
}
