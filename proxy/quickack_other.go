//go:build !linux

package proxy

import "net"

// quickAck has no such option to set on this platform (TCP_QUICKACK is
// Linux's); see quickack_linux.go.
func quickAck(net.Conn) func() { return nil }
