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
// the GPU shares system RAM, which the RAM device already reports.
func openGPUs() (gpuProbe, error) {
	switch {
	case runtime.GOOS == "darwin":
		return nil, errors.New("unified memory: the GPU uses system RAM")
	case runtime.GOOS != "linux":
		return nil, errors.New("NVML is only used on linux")
	default:
		return nil, errors.New("built without cgo, which NVML needs")
	}
}
