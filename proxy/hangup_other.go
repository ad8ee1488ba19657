//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package proxy

import "net"

// watchHangup cannot tell a client's hang-up on this platform: a waiting
// request leaves its queue only when its wait times out.
func watchHangup(net.Conn, func()) (stop func()) { return func() {} }

// aliveCheck cannot look at a connection on this platform: a request on a
// connection the backend closed fails, and is sent again (see
// upstreamClient.do).
func aliveCheck(net.Conn) func() bool { return nil }
