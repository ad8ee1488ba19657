//go:build linux

package proxy

import (
	"net"
	"syscall"
)

// quickAck returns a function that has the kernel acknowledge at once
// what next arrives on conn, and what has arrived unacknowledged; nil if
// conn cannot be reached.
//
// Linux delays ACKs (up to about 40ms) on a connection it sees used as
// request and answer, hoping to send them with the next request. A backend
// that writes an answer's headers and its body apart without TCP_NODELAY
// (Python's http.server, Flask's development server) holds the body back,
// by Nagle's algorithm, until the headers are acknowledged: every answer
// on a kept connection would wait out the delay. TCP_QUICKACK lasts only
// until the kernel goes back to delaying, so it is set again before each
// read that waits for more of an answer (see upConn.Read). It is made once
// per connection, so that each call is one system call and no allocation.
func quickAck(conn net.Conn) func() {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	set := func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	}
	return func() { _ = rc.Control(set) }
}
