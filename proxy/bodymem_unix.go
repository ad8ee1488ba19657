//go:build unix

package proxy

import "syscall"

// allocLarge returns n bytes for a large request body, mapped outside Go's
// heap, and the function that unmaps them. A body's memory is then given
// back to the OS the moment its request lets go of it, not at some later
// collection: a burst of uploads leaves hotswap as small as it was, and
// bodies held never take more than the budget counts (the collector would
// let freed ones pile up beside live ones first).
func allocLarge(n int) ([]byte, func()) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n), func() {}
	}
	return b, func() { _ = syscall.Munmap(b) }
}
