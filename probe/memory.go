package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v3/mem"
	"github.com/shirou/gopsutil/v3/process"
	"go.uber.org/zap"
)

// DeviceRAM is Device.Index for system RAM. GPUs are numbered 0..n-1:
// NVIDIA's first, in NVML's order, then AMD's and Intel's in the kernel's
// DRM card order, then Apple's.
const DeviceRAM = -1

// ErrNoProcess is wrapped by Usage when the pid it was asked about has exited
// (or never existed): the caller's backend is gone, not the probe broken.
var ErrNoProcess = errors.New("no such process")

// Device is one pool of memory: system RAM or one GPU's VRAM.
type Device struct {
	Index int // DeviceRAM or the GPU's index
	// VendorIndex is the GPU's index among its vendor's GPUs on this
	// machine, what that vendor's device variable counts
	// (CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES, ZE_AFFINITY_MASK...).
	// NVML's index; for AMD and Intel the DRM card order (PCI probe order,
	// which ROCm and Level Zero normally follow too). 0 for RAM.
	VendorIndex int
	Name        string // "ram" or "gpu0", "gpu1", ...
	Model       string // the GPU's product name, e.g. "NVIDIA H100 80GB HBM3"; empty for RAM
	Total       int64  // bytes
	Free        int64  // bytes available now (RAM: gopsutil's Available, not Free)
	// Vendor is the GPU's maker: VendorNVIDIA, VendorAMD, VendorIntel or
	// VendorApple; empty for RAM. It says which variable pins a backend to
	// the GPU (see config.GPUEnvs).
	Vendor string
	// Unified says the GPU's memory is system RAM (an APU, Apple
	// Silicon): what a backend takes there is taken from RAM too, within
	// Total, the part of RAM the GPU may use.
	Unified bool
}

// The GPU vendors hotswap reads memory from.
const (
	VendorNVIDIA = "nvidia"
	VendorAMD    = "amd"
	VendorIntel  = "intel"
	VendorApple  = "apple"
)

// Usage is what one process tree (a backend and everything it spawned) uses.
type Usage struct {
	RAM int64 // sum of RSS over the tree, bytes
	// VRAM is bytes per GPU index: NVIDIA's from NVML's per-process
	// lists, AMD's and Intel's from DRM fdinfo (on a unified GPU, every
	// memory region the GPU maps). nil/empty when none. Apple's is not
	// told apart: Metal buffers are in RSS, so they are in RAM.
	VRAM map[int]int64
}

// TotalVRAM is VRAM summed over the GPUs.
func (u Usage) TotalVRAM() int64 {
	var n int64
	for _, v := range u.VRAM {
		n += v
	}
	return n
}

// Memory reports the machine's memory and what processes use.
type Memory interface {
	// Devices returns RAM first, then each GPU in index order.
	Devices(ctx context.Context) ([]Device, error)
	// Usage measures the process tree rooted at pid.
	Usage(ctx context.Context, pid int) (Usage, error)
	// UnifiedMemory is true where GPU memory is system RAM (macOS), so VRAM needs count against RAM.
	UnifiedMemory() bool
}

// gpuProbe is the GPU half of the real probe. It is NVML on linux builds
// with cgo (nvml_linux_cgo.go) and absent everywhere else (nvml_other.go),
// so that the rest of this file compiles and behaves the same on every
// platform.
type gpuProbe interface {
	// count is the number of GPUs, which devices numbers 0..count-1.
	count() int
	// devices returns each GPU in index order.
	devices() ([]Device, error)
	// usage returns the VRAM used per GPU index by the given pids.
	usage(pids map[int]bool) (map[int]int64, error)
	close() error
}

// memory is the machine's real probe.
type memory struct {
	gpu     gpuProbe  // NVIDIA's GPUs; nil when NVML is off
	drm     *drmGPUs  // AMD's and Intel's, from sysfs; nil when none
	metal   *metalGPU // Apple Silicon's; nil elsewhere
	log     *zap.Logger
	unified bool
}

// MemoryOptions says where the real probe reads the kernel's files from.
// The zero value reads the machine's own.
type MemoryOptions struct {
	// SysRoot stands for /sys: AMD and Intel GPUs are found under
	// SysRoot/class/drm. Empty means "/sys". Any other root is a test's
	// fake tree, which then stands for all of the machine's GPUs: NVML is
	// not opened, so what the probe reports does not depend on the machine
	// the test runs on.
	SysRoot string
	// ProcRoot stands for /proc where DRM clients' memory is read
	// (ProcRoot/PID/fd and ProcRoot/PID/fdinfo). Empty means "/proc". The
	// process tree itself, and RSS, are always read from the real /proc:
	// the pids are the real ones.
	ProcRoot string
}

// NewMemory returns the machine's real probe: RAM from gopsutil, GPUs from NVML when the NVIDIA
// library and a GPU are present. No library, no GPU, or an NVML error at init means RAM only:
// logged once (Info level, with the reason), never a crash. log may be nil.
//
// The result also implements io.Closer; Close shuts NVML down.
func NewMemory(log *zap.Logger) Memory {
	return NewMemoryWith(log, MemoryOptions{})
}

// NewMemoryWith is NewMemory reading the kernel's files from the roots in
// opts (a test's fake /sys and /proc).
func NewMemoryWith(log *zap.Logger, opts MemoryOptions) Memory {
	if log == nil {
		log = zap.NewNop()
	}
	sysRoot, procRoot := opts.SysRoot, opts.ProcRoot
	if sysRoot == "" {
		sysRoot = "/sys"
	}
	if procRoot == "" {
		procRoot = "/proc"
	}
	m := &memory{unified: runtime.GOOS == "darwin", log: log}
	// Why each kind of GPU is absent, logged together when none is found.
	var why []string
	next := 0 // the next GPU's index
	vendorFirst := map[string]int{}
	if sysRoot != "/sys" {
		why = append(why, "NVML not opened: a fake sysfs root stands for the GPUs")
	} else if gpu, err := openGPUs(); err != nil {
		why = append(why, err.Error())
	} else {
		m.gpu = gpu
		next = gpu.count()
		vendorFirst[VendorNVIDIA] = next
	}
	if drm, err := openDRM(sysRoot, procRoot, next, vendorFirst, log); err != nil {
		why = append(why, err.Error())
	} else {
		m.drm = drm
		next += len(drm.cards)
	}
	if metal, err := openMetal(next); err != nil {
		why = append(why, err.Error())
	} else {
		m.metal = metal
	}
	if m.gpu == nil && m.drm == nil && m.metal == nil {
		// Not an error for hotswap: a machine without GPUs runs its
		// models on the CPU, and the swapper counts VRAM needs against RAM.
		log.Info("GPU memory probe off, planning with RAM only", zap.String("reason", strings.Join(why, "; ")))
		return m
	}
	if devs, err := m.Devices(context.Background()); err == nil {
		for _, d := range devs[1:] {
			log.Info("GPU found", zap.String("device", d.Name), zap.String("vendor", d.Vendor),
				zap.String("model", d.Model), zap.Bool("unified", d.Unified),
				zap.Int64("total", d.Total), zap.Int64("free", d.Free))
		}
	}
	return m
}

// UnifiedMemory implements Memory. It stays true on macOS only, as callers
// expect; Device.Unified says it per GPU, and is the finer truth.
func (m *memory) UnifiedMemory() bool { return m.unified }

// Close shuts NVML down. Devices and Usage keep working afterwards but
// report no NVIDIA GPU. Close is safe to call more than once.
func (m *memory) Close() error {
	if m.gpu == nil {
		return nil
	}
	return m.gpu.close()
}

// Devices implements Memory.
func (m *memory) Devices(ctx context.Context) ([]Device, error) {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("probe RAM: %w", err)
	}
	if vm.Total == 0 {
		// gopsutil answers zeros, without an error, when it cannot read
		// /proc/meminfo (out of file descriptors, say): a machine with no
		// memory at all, which would refuse every model.
		return nil, errors.New("probe RAM: the system reported no memory (could /proc/meminfo be read?)")
	}
	// Available, not Free: the kernel gives page cache back on demand, so
	// Available is what a new backend can really get.
	ram := Device{Index: DeviceRAM, Name: "ram", Total: int64(vm.Total), Free: int64(vm.Available)}
	devs := []Device{ram}
	if m.gpu != nil {
		gpus, err := m.gpu.devices()
		if err != nil {
			return nil, err
		}
		devs = append(devs, gpus...)
	}
	if m.drm != nil {
		gpus, err := m.drm.devices(ram.Total, ram.Free)
		if err != nil {
			return nil, err
		}
		devs = append(devs, gpus...)
	}
	if m.metal != nil {
		gpu, err := m.metal.device(ram.Free)
		if err != nil {
			return nil, err
		}
		devs = append(devs, gpu)
	}
	return devs, nil
}

// Usage implements Memory.
func (m *memory) Usage(ctx context.Context, pid int) (Usage, error) {
	pids, err := processTree(ctx, pid)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	for _, p := range pids {
		proc := &process.Process{Pid: int32(p)}
		mi, err := proc.MemoryInfoWithContext(ctx)
		if err != nil {
			if p != pid {
				// A descendant that exited since the walk uses no memory any more.
				continue
			}
			if !alive(ctx, pid) {
				return Usage{}, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
			}
			return Usage{}, fmt.Errorf("memory of pid %d: %w", pid, err)
		}
		u.RAM += int64(mi.RSS)
	}
	vram := map[int]int64{}
	if m.gpu != nil {
		set := make(map[int]bool, len(pids))
		for _, p := range pids {
			set[p] = true
		}
		nv, err := m.gpu.usage(set)
		if err != nil {
			return Usage{}, err
		}
		for i, n := range nv {
			vram[i] += n
		}
	}
	if m.drm != nil {
		for i, n := range m.drm.usage(pids) {
			vram[i] += n
		}
	}
	if len(vram) > 0 {
		u.VRAM = vram
	}
	return u, nil
}

// processTree returns root and all its descendants, root first. A root that
// has exited (or is a zombie waiting to be reaped, which holds no memory)
// is ErrNoProcess; descendants that vanish during the walk are skipped.
func processTree(ctx context.Context, root int) ([]int, error) {
	if root <= 0 || !alive(ctx, root) {
		return nil, fmt.Errorf("pid %d: %w", root, ErrNoProcess)
	}
	tree := []int{root}
	seen := map[int]bool{root: true}
	// Breadth first over tree, which grows as children are found; seen
	// guards against a pid recycled into its own subtree mid-walk.
	for i := 0; i < len(tree); i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		kids, err := children(ctx, tree[i])
		if err != nil {
			return nil, fmt.Errorf("list children of pid %d: %w", tree[i], err)
		}
		for _, k := range kids {
			if !seen[k] {
				seen[k] = true
				tree = append(tree, k)
			}
		}
	}
	return tree, nil
}

// alive tells whether pid is a running process, not exited nor a zombie.
func alive(ctx context.Context, pid int) bool {
	proc, err := process.NewProcessWithContext(ctx, int32(pid))
	if err != nil {
		return false
	}
	status, err := proc.StatusWithContext(ctx)
	if err != nil {
		// It may have exited between the two calls; whether it still
		// exists is the best answer we have then.
		ok, _ := process.PidExistsWithContext(ctx, int32(pid))
		return ok
	}
	return len(status) == 0 || status[0] != process.Zombie
}

// children returns the pids of pid's direct children; none (not an error)
// when pid has exited meanwhile.
func children(ctx context.Context, pid int) ([]int, error) {
	if runtime.GOOS == "linux" {
		if kids, ok := procChildren(pid); ok {
			return kids, nil
		}
	}
	return psChildren(ctx, pid)
}

// procChildren reads the kernel's list of pid's children from
// /proc/<pid>/task/<tid>/children (each thread has its own list). That costs
// a few small reads, where gopsutil's Children runs pgrep, which scans all
// of /proc and spawns a process per call. ok is false when the kernel lacks
// those files (built without CONFIG_PROC_CHILDREN).
func procChildren(pid int) (kids []int, ok bool) {
	taskDir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(taskDir)
	if err != nil {
		// The process exited: no children to count, and the caller has
		// already decided whether that matters.
		return nil, errors.Is(err, os.ErrNotExist)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(taskDir, t.Name(), "children"))
		if err != nil {
			if _, serr := os.Stat(filepath.Join(taskDir, t.Name())); serr == nil {
				// The thread exists but has no children file: an old or
				// unusual kernel, so use the portable way instead.
				return nil, false
			}
			continue // the thread ended meanwhile
		}
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids, true
}

// psChildren is the portable way to list children, through gopsutil.
func psChildren(ctx context.Context, pid int) ([]int, error) {
	procs, err := (&process.Process{Pid: int32(pid)}).ChildrenWithContext(ctx)
	switch {
	case errors.Is(err, process.ErrorNoChildren):
		return nil, nil
	case errors.Is(err, process.ErrorProcessNotRunning):
		// gopsutil gives up on the whole list when one child exits between
		// listing and looking it up; asking again gets the rest.
		procs, err = (&process.Process{Pid: int32(pid)}).ChildrenWithContext(ctx)
		if errors.Is(err, process.ErrorNoChildren) || errors.Is(err, process.ErrorProcessNotRunning) {
			return nil, nil
		}
	}
	if err != nil {
		// pgrep exits 1 when there is no child: on some platforms gopsutil
		// passes that on as an error rather than ErrorNoChildren.
		var exit interface{ ExitCode() int }
		if errors.As(err, &exit) && exit.ExitCode() == 1 {
			return nil, nil
		}
		return nil, err
	}
	kids := make([]int, 0, len(procs))
	for _, p := range procs {
		kids = append(kids, int(p.Pid))
	}
	return kids, nil
}
