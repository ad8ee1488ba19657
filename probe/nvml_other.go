//go:build !linux || !cgo

package probe

import (
	"errors"
	"runtime"
)

// NVMLBuilt says whether this build can read NVIDIA GPUs (NVML needs cgo
// on linux).
const NVMLBuilt = false

// openGPUs reports no GPUs: go-nvml needs cgo (every file of it imports
// "C"), and NVIDIA's library only exists on linux for our purposes. On macOS
// the GPU is Apple's, read by openMetal.
func openGPUs() (gpuProbe, error) {
	switch {
	case runtime.GOOS == "darwin":
		return nil, errors.New("no NVML on macOS")
	case runtime.GOOS != "linux":
		return nil, errors.New("NVML is only used on linux")
	default:
		return nil, errors.New("built without cgo, which NVML needs")
	}
}
