//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package proxy

// fileLimit is unknown on this platform.
func fileLimit() uint64 { return 0 }
