//go:build linux || darwin || freebsd || netbsd || openbsd

package proxy

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// watchHangup calls hangup if the client closes conn before stop is
// called. stop must be called before the server uses conn again.
//
// fasthttp says nothing about a client that leaves while its handler
// waits. A waiting request's client sends nothing more, so the connection
// turns readable only when the client closes it (or pipelines another
// request): the watcher parks on the runtime's poller until then, peeking
// so that any byte stays for the server to read.
func watchHangup(conn net.Conn, hangup func()) (stop func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	// The request's read deadline (server.header_timeout and the body's
	// time) would end the watch long before a long wait ends; fasthttp
	// sets the next request's deadline itself.
	_ = conn.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		_ = rc.Read(func(fd uintptr) bool {
			n, err := peek(fd, b[:])
			switch {
			case err == syscall.EAGAIN:
				return false // nothing yet: wait until readable
			case err != nil || n == 0:
				hangup() // reset, or an orderly close
			}
			return true // closed, or data we leave alone
		})
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			// A deadline in the past wakes the parked read; fasthttp runs
			// with no read deadline while a handler works, so none is lost.
			_ = conn.SetReadDeadline(time.Unix(1, 0))
			<-done
			_ = conn.SetReadDeadline(time.Time{})
		})
	}
}

// peek looks at what there is to read on fd without taking it, and
// without waiting. EINTR is retried here, not by returning false to the
// poller: it is edge-triggered, and a hang-up already seen would not wake
// it again.
func peek(fd uintptr, b []byte) (int, error) {
	for {
		n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// aliveCheck returns a function that reports whether an idle connection
// is still open for another request: nothing to read yet. A peer that
// closed it has left an EOF (or a reset) to read, and one that sent
// something unasked has not kept to HTTP; either way the connection is not
// fit to be used. It is made once per connection, so that each look is one
// system call and no allocation; nil if conn cannot be looked at.
func aliveCheck(conn net.Conn) func() bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var (
		alive bool
		b     [1]byte
	)
	look := func(fd uintptr) bool {
		_, err := peek(fd, b[:])
		alive = err == syscall.EAGAIN
		return true // look once, never wait
	}
	return func() bool {
		_ = rc.Read(look)
		return alive
	}
}
