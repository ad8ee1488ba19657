//go:build linux && cgo

package probe

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVMLBuilt says whether this build can read NVIDIA GPUs (NVML needs cgo
// on linux).
const NVMLBuilt = true

// nvmlGPUs reads GPU memory through NVML. go-nvml links against no library:
// its Init dlopens libnvidia-ml.so.1 and returns ERROR_LIBRARY_NOT_FOUND
// when that fails. Every other NVML call jumps through symbols that only
// exist once Init has succeeded, so nothing here calls NVML before that or
// after Shutdown (that would be a crash in C, which recover cannot catch).
type nvmlGPUs struct {
	// mu serializes NVML calls: NVML is thread-safe, but the handles and
	// closed below are ours, and serial calls keep driver load predictable
	// when many requests ask about memory at once.
	mu     sync.Mutex
	lib    nvml.Interface
	gpus   []nvmlGPU
	closed bool
}

// nvmlGPU is one GPU as found at init: the handle stays valid until
// Shutdown, and the name does not change.
type nvmlGPU struct {
	index  int
	handle nvml.Device
	model  string
}

// openGPUs initializes NVML and finds the GPUs. Any failure leaves NVML shut
// down and says why, for NewMemory to log.
func openGPUs() (gp gpuProbe, err error) {
	lib := nvml.New()
	// go-nvml returns error codes rather than panicking, but a probe must
	// never take hotswap down: turn any panic from it into "no GPUs".
	defer func() {
		if r := recover(); r != nil {
			gp, err = nil, fmt.Errorf("NVML init panicked: %v", r)
		}
	}()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			return nil, errors.New("NVIDIA library libnvidia-ml.so.1 not found")
		}
		return nil, fmt.Errorf("NVML init: %v", ret)
	}
	g := &nvmlGPUs{lib: lib}
	if err := g.find(); err != nil {
		lib.Shutdown()
		return nil, err
	}
	return g, nil
}

// find looks up every GPU's handle and name.
func (g *nvmlGPUs) find() error {
	n, ret := g.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("NVML device count: %v", ret)
	}
	if n == 0 {
		return errors.New("NVML found no GPU")
	}
	for i := range n {
		h, ret := g.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("NVML handle of gpu%d: %v", i, ret)
		}
		model, ret := h.GetName()
		if ret != nvml.SUCCESS {
			model = "" // cosmetic only; the memory figures are what matter
		}
		g.gpus = append(g.gpus, nvmlGPU{index: i, handle: h, model: model})
	}
	return nil
}

// count implements gpuProbe.
func (g *nvmlGPUs) count() int { return len(g.gpus) }

// devices implements gpuProbe.
func (g *nvmlGPUs) devices() (devs []Device, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, nil // RAM only after Close, as documented on memory.Close
	}
	defer recoverInto(&err)
	for _, gpu := range g.gpus {
		// v1 of the memory query: every driver has it, and its Free is what
		// a new process can allocate, which is all the swapper needs.
		mi, ret := gpu.handle.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			// An error rather than a guess: planning with wrong numbers
			// would start backends that then fail to load.
			return nil, fmt.Errorf("NVML memory of gpu%d: %v", gpu.index, ret)
		}
		devs = append(devs, Device{
			Index:       gpu.index,
			VendorIndex: gpu.index,
			Name:        "gpu" + strconv.Itoa(gpu.index),
			Model:       gpu.model,
			Total:       int64(mi.Total),
			Free:        int64(mi.Free),
			Vendor:      VendorNVIDIA,
		})
	}
	return devs, nil
}

// usage implements gpuProbe. NVML reports pids as the kernel's initial pid
// namespace sees them; in a container without the host's pid namespace
// they match none of ours and usage reports nothing.
func (g *nvmlGPUs) usage(pids map[int]bool) (vram map[int]int64, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, nil
	}
	defer recoverInto(&err)
	for _, gpu := range g.gpus {
		compute, ret := gpu.handle.GetComputeRunningProcesses()
		if ret != nvml.SUCCESS && ret != nvml.ERROR_NOT_SUPPORTED {
			return nil, fmt.Errorf("NVML compute processes of gpu%d: %v", gpu.index, ret)
		}
		graphics, ret := gpu.handle.GetGraphicsRunningProcesses()
		if ret != nvml.SUCCESS && ret != nvml.ERROR_NOT_SUPPORTED {
			return nil, fmt.Errorf("NVML graphics processes of gpu%d: %v", gpu.index, ret)
		}
		// A process doing both compute and graphics is in both lists with
		// the same memory: count it once per GPU.
		used := map[uint32]uint64{}
		for _, p := range append(compute, graphics...) {
			if !pids[int(p.Pid)] || p.UsedGpuMemory == notAvailable {
				// notAvailable: NVML cannot say (no permission, or a
				// driver mode without per-process accounting).
				continue
			}
			used[p.Pid] = max(used[p.Pid], p.UsedGpuMemory)
		}
		for _, n := range used {
			if vram == nil {
				vram = map[int]int64{}
			}
			vram[gpu.index] += int64(n)
		}
	}
	return vram, nil
}

// notAvailable is NVML_VALUE_NOT_AVAILABLE as an unsigned long long.
const notAvailable = ^uint64(0)

// close implements gpuProbe.
func (g *nvmlGPUs) close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	if ret := g.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("NVML shutdown: %v", ret)
	}
	return nil
}

// recoverInto turns a panic from go-nvml into an error for the caller, so a
// bug in a binding fails one probe rather than the whole proxy.
func recoverInto(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("NVML panicked: %v", r)
	}
}
