//go:build !unix

package proxy

// allocLarge returns n bytes for a large request body from Go's heap; see
// the unix version.
func allocLarge(n int) ([]byte, func()) { return make([]byte, n), func() {} }
