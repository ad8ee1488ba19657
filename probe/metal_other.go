//go:build !darwin

package probe

import "errors"

// openMetal reports no Metal GPU: Metal is Apple's.
func openMetal(int) (*metalGPU, error) {
	return nil, errors.New("Metal is only on macOS")
}
