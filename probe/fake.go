package probe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Fake is a Memory whose numbers a test scripts, while following real
// processes: a live process running Exe whose arguments include a scripted
// marker (a model id passed with -model, say) uses that marker's memory.
// Memory is therefore used exactly while the process really lives, and
// comes back only once it is really gone. Held memory stands for what
// something else (another program, a driver slow to release) occupies.
type Fake struct {
	// Exe limits the processes counted to those running this binary.
	Exe string

	mu      sync.Mutex
	ram     int64
	gpus    []Device // Free is worked out on each look
	unified bool
	marks   map[string]Usage
	held    map[int]int64
	// With linger, a process's memory stays in use after it exits, until
	// Release: a driver that reports frees late.
	linger bool
	seen   map[int]Usage
	looks  int   // calls of Devices
	peak   int64 // the most RAM in use any call of Devices saw
}

// NewFake returns a Fake with ram bytes of RAM and one GPU per gpus entry
// (its VRAM in bytes), of no said vendor (see AddGPU for others).
func NewFake(exe string, ram int64, gpus ...int64) *Fake {
	f := &Fake{Exe: exe, ram: ram, marks: make(map[string]Usage), held: make(map[int]int64),
		seen: make(map[int]Usage)}
	for _, total := range gpus {
		f.AddGPU(Device{Total: total})
	}
	return f
}

// AddGPU adds a GPU after those there are, and returns its index. Of d,
// Total, Vendor, Unified and Model (default "fake GPU") are used; its
// VendorIndex counts the GPUs of its vendor before it. A
// unified GPU's memory is RAM: what processes use on it is used in RAM
// too, as on an APU or a Mac.
//
// Scripted VRAM is per GPU as the process sees them, its runtime told by
// its environment which to show: CUDA_VISIBLE_DEVICES N is the Nth GPU of
// no vendor or NVIDIA's, HIP_VISIBLE_DEVICES and ROCR_VISIBLE_DEVICES N
// the Nth AMD GPU, ZE_AFFINITY_MASK N and ONEAPI_DEVICE_SELECTOR
// level_zero:N the Nth Intel GPU, GGML_VK_VISIBLE_DEVICES N the Nth GPU
// of all; the one it shows is the process's device 0.
func (f *Fake) AddGPU(d Device) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	d.Index = len(f.gpus)
	d.Name = "gpu" + strconv.Itoa(d.Index)
	d.VendorIndex = 0
	for _, g := range f.gpus {
		if g.Vendor == d.Vendor {
			d.VendorIndex++
		}
	}
	if d.Model == "" {
		d.Model = "fake GPU"
	}
	f.gpus = append(f.gpus, d)
	return d.Index
}

// Linger makes the memory of processes that exit stay in use until
// Release is called.
func (f *Fake) Linger(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.linger = on
}

// Looks counts the calls of Devices so far: a test can wait until its
// subject has looked at the memory again.
func (f *Fake) Looks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.looks
}

// PeakRAM is the most RAM in use (processes and Hold) that any call of
// Devices has seen: a test that calls Devices often sees whether the
// processes it scripted ever held more than the machine has.
func (f *Fake) PeakRAM() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peak
}

// Release frees the memory of exited processes kept by Linger.
func (f *Fake) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = make(map[int]Usage)
}

// Script makes every process with marker among its arguments use u.
func (f *Fake) Script(marker string, u Usage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marks[marker] = u
}

// Hold makes n bytes of device unavailable (DeviceRAM or a GPU index).
func (f *Fake) Hold(device int, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held[device] = n
}

// SetUnified makes the fake report unified memory (as on macOS).
func (f *Fake) SetUnified(u bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unified = u
}

// UnifiedMemory implements Memory.
func (f *Fake) UnifiedMemory() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unified
}

// Devices implements Memory.
func (f *Fake) Devices(ctx context.Context) ([]Device, error) {
	live := map[int]Usage{}
	for _, pid := range Running(f.Exe) {
		live[pid] = f.usageOf(pid)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looks++
	for pid, u := range live {
		f.seen[pid] = u
	}
	used := Usage{VRAM: map[int]int64{}}
	for pid, u := range f.seen {
		if _, ok := live[pid]; !ok && !f.linger {
			delete(f.seen, pid)
			continue
		}
		used.RAM += u.RAM
		for d, n := range u.VRAM {
			used.VRAM[d] += n
		}
	}
	inRAM := used.RAM + f.held[DeviceRAM]
	var gpus []Device
	for _, g := range f.gpus {
		g.Free = max(0, g.Total-used.VRAM[g.Index]-f.held[g.Index])
		if g.Unified {
			inRAM += used.VRAM[g.Index] + f.held[g.Index]
		}
		gpus = append(gpus, g)
	}
	f.peak = max(f.peak, inRAM)
	devs := []Device{{Index: DeviceRAM, Name: "ram", Total: f.ram, Free: max(0, f.ram-inRAM)}}
	return append(devs, gpus...), nil
}

// Usage implements Memory.
func (f *Fake) Usage(ctx context.Context, pid int) (Usage, error) {
	if !runs(pid, f.Exe) {
		return Usage{}, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	}
	return f.usageOf(pid), nil
}

// usageOf is the scripted use of pid. Scripted VRAM is per GPU as the
// process sees them: like CUDA, a process limited by CUDA_VISIBLE_DEVICES
// to one GPU sees it as device 0 (see AddGPU for the other runtimes').
func (f *Fake) usageOf(pid int) Usage {
	args := cmdline(pid)
	env := environ(pid)
	f.mu.Lock()
	defer f.mu.Unlock()
	visible := f.visible(env)
	var u Usage
	for _, a := range args {
		m, ok := f.marks[a]
		if !ok {
			continue
		}
		u.RAM += m.RAM
		for d, n := range m.VRAM {
			if visible >= 0 && d == 0 {
				d = visible
			}
			if u.VRAM == nil {
				u.VRAM = map[int]int64{}
			}
			u.VRAM[d] += n
		}
	}
	return u
}

// visibleVendor is the vendor whose GPUs each variable numbers ("*": all).
var visibleVendor = map[string]string{
	"CUDA_VISIBLE_DEVICES": VendorNVIDIA, "HIP_VISIBLE_DEVICES": VendorAMD, "ROCR_VISIBLE_DEVICES": VendorAMD,
	"ZE_AFFINITY_MASK": VendorIntel, "ONEAPI_DEVICE_SELECTOR": VendorIntel, "GGML_VK_VISIBLE_DEVICES": "*",
}

// visible is the index of the GPU a process with environment env is shown
// alone, or -1 (all of them). The caller holds f.mu.
func (f *Fake) visible(env []string) int {
	for _, e := range env {
		key, v, _ := strings.Cut(e, "=")
		vendor, ok := visibleVendor[key]
		if !ok {
			continue
		}
		if key == "ONEAPI_DEVICE_SELECTOR" {
			if v, ok = strings.CutPrefix(v, "level_zero:"); !ok {
				continue
			}
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			continue
		}
		for _, g := range f.gpus {
			gv := g.Vendor
			if gv == "" {
				gv = VendorNVIDIA
			}
			if vendor != "*" && gv != vendor {
				continue
			}
			if n == 0 {
				return g.Index
			}
			n--
		}
	}
	return -1
}

func cmdline(pid int) []string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func environ(pid int) []string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	return strings.Split(string(b), "\x00")
}
