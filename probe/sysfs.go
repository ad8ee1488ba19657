package probe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// AMD and Intel GPUs on Linux, read from sysfs without any vendor library.
//
// Each GPU is a DRM card, SysRoot/class/drm/cardN, whose "device" is the
// PCI device. Its uevent names the driver, the PCI id and the PCI slot
// (DRIVER=amdgpu, PCI_ID=1002:744C, PCI_SLOT_NAME=0000:03:00.0); the slot
// is what DRM fdinfo calls drm-pdev.
//
// amdgpu (Documentation/gpu/amdgpu/driver-misc.rst, "GPU Memory Usage
// Information") prints, in bytes, under the device:
//
//	mem_info_vram_total, mem_info_vram_used  the GPU's own memory
//	mem_info_gtt_total, mem_info_gtt_used    system RAM the GPU maps (GTT)
//	mem_info_vram_vendor                     the VRAM chips' maker; the
//	                                         kernel hides it (or, before
//	                                         6.8, prints "unknown") when
//	                                         there are no chips to name
//	product_name                             from the board's FRU EEPROM,
//	                                         where it has one
//
// Intel prints less. xe prints each tile's local memory size in
// device/tileN/physical_vram_size_bytes (drivers/gpu/drm/xe/xe_tile_sysfs.c,
// discrete GPUs only; a little more than what is usable, the rest being
// the driver's), and nothing of what is used: xe and i915 report their
// regions' use only through ioctls (DRM_XE_DEVICE_QUERY_MEM_REGIONS,
// DRM_I915_QUERY_MEMORY_REGIONS), and xe only to privileged callers. Mainline
// i915 prints no size at all; Intel's out-of-tree i915 prints
// lmem_total_bytes, on the card or on its device. So for an Intel discrete
// GPU the total comes from those files and what is in use from the DRM
// clients' fdinfo that hotswap may read (its own backends, at least).

// The PCI vendor ids of the GPUs read here.
const (
	pciVendorAMD   = "1002"
	pciVendorIntel = "8086"
)

// intelIGPUSlot is where Intel's integrated GPU sits on every Intel
// platform: bus 0, device 2, function 0.
const intelIGPUSlot = "0000:00:02.0"

// apuMaxVRAM bounds the VRAM of an AMD GPU that is taken for an APU (see
// amdUnified).
const apuMaxVRAM = 2 << 30

// drmCard is one AMD or Intel GPU, found once at start: GPUs do not come
// and go while hotswap runs (NVML is read the same way).
type drmCard struct {
	index       int    // Device.Index
	vendorIndex int    // Device.VendorIndex
	card        string // "card1", for logs
	dev         string // SysRoot/class/drm/cardN/device
	pdev        string // PCI slot, as drm-pdev names it
	driver      string // amdgpu, i915 or xe
	vendor      string // VendorAMD or VendorIntel
	model       string
	unified     bool
	// localTotal is an Intel discrete GPU's memory size, which does not
	// change; AMD's total is read at every look.
	localTotal int64
}

// drmGPUs is the sysfs half of the probe: AMD and Intel GPUs.
type drmGPUs struct {
	procRoot string
	cards    []drmCard
	log      *zap.Logger
}

// openDRM finds the AMD and Intel GPUs under sysRoot. first is the index
// the first of them gets (after NVML's GPUs); per-vendor indexes start at
// vendorFirst[vendor]. A card that cannot be read, or whose memory hotswap
// cannot tell, is logged and left out. No GPU at all is an error saying why,
// for the caller to log.
func openDRM(sysRoot, procRoot string, first int, vendorFirst map[string]int, log *zap.Logger) (*drmGPUs, error) {
	drmDir := filepath.Join(sysRoot, "class", "drm")
	entries, err := os.ReadDir(drmDir)
	if err != nil {
		return nil, fmt.Errorf("no DRM devices: %w", err)
	}
	var names []string
	for _, e := range entries {
		// cardN only: cardN-DP-1 is a connector, renderD128 another
		// node of the same GPU.
		if n, ok := strings.CutPrefix(e.Name(), "card"); ok && isDigits(n) {
			names = append(names, e.Name())
		}
	}
	// card2 before card10: the kernel's numbering, which follows the
	// order the GPUs were probed in.
	sort.Slice(names, func(i, j int) bool {
		a, _ := strconv.Atoi(names[i][len("card"):])
		b, _ := strconv.Atoi(names[j][len("card"):])
		return a < b
	})
	g := &drmGPUs{procRoot: procRoot, log: log}
	perVendor := map[string]int{}
	for v, n := range vendorFirst {
		perVendor[v] = n
	}
	for _, name := range names {
		c, err := readCard(drmDir, name)
		if err != nil {
			log.Warn("GPU left out: hotswap cannot read its memory", zap.String("card", name), zap.Error(err))
			continue
		}
		if c == nil {
			continue // not AMD or Intel (NVIDIA is NVML's), or not a GPU we read
		}
		c.index = first + len(g.cards)
		c.vendorIndex = perVendor[c.vendor]
		perVendor[c.vendor]++
		g.cards = append(g.cards, *c)
	}
	if len(g.cards) == 0 {
		return nil, fmt.Errorf("no AMD or Intel GPU in %s", drmDir)
	}
	return g, nil
}

// readCard identifies one card and checks that its memory can be read. It
// returns nil, nil for a card that is not ours to read.
func readCard(drmDir, name string) (*drmCard, error) {
	dev := filepath.Join(drmDir, name, "device")
	ue := readUevent(filepath.Join(dev, "uevent"))
	pciID := ue["PCI_ID"]
	vendor, _, _ := strings.Cut(pciID, ":")
	if vendor == "" {
		b, err := os.ReadFile(filepath.Join(dev, "vendor"))
		if err != nil {
			return nil, nil // not a PCI device (a virtual display, say)
		}
		vendor = strings.TrimPrefix(strings.TrimSpace(string(b)), "0x")
	}
	driver := ue["DRIVER"]
	if driver == "" {
		if l, err := os.Readlink(filepath.Join(dev, "driver")); err == nil {
			driver = filepath.Base(l)
		}
	}
	pdev := ue["PCI_SLOT_NAME"]
	if pdev == "" {
		if l, err := os.Readlink(dev); err == nil {
			pdev = filepath.Base(l)
		}
	}
	c := &drmCard{card: name, dev: dev, pdev: pdev, driver: driver}
	switch strings.ToLower(vendor) {
	case pciVendorAMD:
		if driver != "amdgpu" {
			return nil, fmt.Errorf("AMD GPU driven by %q: only amdgpu reports its memory", driver)
		}
		c.vendor = VendorAMD
		m, err := readAMD(dev)
		if err != nil {
			return nil, err
		}
		c.unified = amdUnified(dev, m.vramTotal)
		c.model = cardModel(dev, "AMD GPU", pciID)
	case pciVendorIntel:
		if driver != "i915" && driver != "xe" {
			return nil, fmt.Errorf("Intel GPU driven by %q: only i915 and xe are read", driver)
		}
		c.vendor = VendorIntel
		total, err := intelLocalMemory(filepath.Join(drmDir, name), dev)
		if err != nil {
			return nil, err
		}
		switch {
		case total > 0:
			c.localTotal = total
		case pdev == intelIGPUSlot:
			// Integrated: its memory is system RAM, with no limit
			// of its own that sysfs shows.
			c.unified = true
		default:
			return nil, fmt.Errorf("discrete Intel GPU on %s, whose sysfs says nothing of its memory size (xe prints it; mainline i915 does not)", driver)
		}
		c.model = cardModel(dev, "Intel GPU", pciID)
	default:
		return nil, nil
	}
	return c, nil
}

// amdMem is what amdgpu says of its memory, in bytes.
type amdMem struct {
	vramTotal, vramUsed, gttTotal, gttUsed int64
}

// readAMD reads amdgpu's memory files.
func readAMD(dev string) (amdMem, error) {
	var m amdMem
	for _, f := range []struct {
		name string
		to   *int64
	}{
		{"mem_info_vram_total", &m.vramTotal},
		{"mem_info_vram_used", &m.vramUsed},
		{"mem_info_gtt_total", &m.gttTotal},
		{"mem_info_gtt_used", &m.gttUsed},
	} {
		n, err := readBytesFile(filepath.Join(dev, f.name))
		if err != nil {
			return amdMem{}, err
		}
		*f.to = n
	}
	if m.vramTotal == 0 && m.gttTotal == 0 {
		return amdMem{}, errors.New("amdgpu reports no memory at all")
	}
	return m, nil
}

// amdUnified tells an APU from a discrete GPU. An APU's "VRAM" is a
// carve-out of system RAM that the firmware sets aside (typically 64 MiB to
// 2 GiB, "UMA frame buffer size" in the BIOS), and the GPU does its real
// work in GTT, which is system RAM. The kernel sets no sysfs flag for it, so
// the rule is: a VRAM of at most 2 GiB whose chips have no known maker
// (mem_info_vram_vendor absent, empty or "unknown": there are no chips).
// Both must hold, so that a small discrete card keeps its VRAM, and an APU
// whose BIOS sets aside more than 2 GiB is planned as a GPU with that much
// VRAM of its own (which it is: the carve-out is not in the OS's RAM), never
// overstated.
func amdUnified(dev string, vramTotal int64) bool {
	if vramTotal > apuMaxVRAM {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dev, "mem_info_vram_vendor"))
	if err != nil {
		return true // hidden: the kernel knows no VRAM maker
	}
	v := strings.TrimSpace(string(b))
	return v == "" || v == "unknown"
}

// intelLocalMemory is an Intel GPU's local memory size in bytes: the sum
// over xe's tiles, or i915's lmem_total_bytes; 0 when sysfs shows none.
func intelLocalMemory(cardDir, dev string) (int64, error) {
	tiles, _ := filepath.Glob(filepath.Join(dev, "tile*", "physical_vram_size_bytes"))
	var total int64
	for _, t := range tiles {
		n, err := readBytesFile(t)
		if err != nil {
			return 0, err
		}
		total += n
	}
	if total > 0 {
		return total, nil
	}
	for _, p := range []string{filepath.Join(cardDir, "lmem_total_bytes"), filepath.Join(dev, "lmem_total_bytes")} {
		n, err := readBytesFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		return n, err
	}
	return 0, nil
}

// cardModel is the product name where the board has one, else the vendor
// and PCI id (e.g. "AMD GPU 1002:744C").
func cardModel(dev, vendor, pciID string) string {
	if b, err := os.ReadFile(filepath.Join(dev, "product_name")); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s
		}
	}
	if pciID == "" {
		return vendor
	}
	return vendor + " " + pciID
}

// devices returns each card's memory now. ramTotal and ramAvail are the
// system's, for the GPUs whose memory is RAM.
func (g *drmGPUs) devices(ramTotal, ramAvail int64) ([]Device, error) {
	// What the DRM clients we can see hold on each Intel discrete GPU,
	// whose driver does not say what is used; read only when needed, as
	// it walks every process.
	var intelUsed map[string]int64
	devs := make([]Device, 0, len(g.cards))
	for _, c := range g.cards {
		d := Device{
			Index:       c.index,
			VendorIndex: c.vendorIndex,
			Name:        "gpu" + strconv.Itoa(c.index),
			Model:       c.model,
			Vendor:      c.vendor,
			Unified:     c.unified,
		}
		switch {
		case c.vendor == VendorAMD:
			m, err := readAMD(c.dev)
			if err != nil {
				// An error rather than a guess, as for NVML.
				return nil, fmt.Errorf("memory of %s (%s): %w", d.Name, c.card, err)
			}
			if c.unified {
				// What the GPU may still map of RAM, and no more than
				// RAM still has.
				d.Total = m.gttTotal
				d.Free = min(m.gttTotal-m.gttUsed, ramAvail)
			} else {
				d.Total = m.vramTotal
				d.Free = m.vramTotal - m.vramUsed
			}
		case c.unified:
			// Intel integrated: all of RAM, as sysfs shows no limit.
			d.Total = ramTotal
			d.Free = ramAvail
		default:
			if intelUsed == nil {
				intelUsed = g.usedByAll()
			}
			d.Total = c.localTotal
			d.Free = c.localTotal - intelUsed[c.pdev]
		}
		d.Free = max(0, min(d.Free, d.Total))
		devs = append(devs, d)
	}
	return devs, nil
}

// usedByAll sums the local memory that every readable DRM client holds, per
// PCI slot.
func (g *drmGPUs) usedByAll() map[string]int64 {
	used := map[string]int64{}
	pids, err := allPids(g.procRoot)
	if err != nil {
		g.log.Debug("cannot list processes for DRM memory", zap.Error(err))
		return used
	}
	for _, c := range drmClients(g.procRoot, pids, g.logBad) {
		used[c.pdev] += localBytes(c, false)
	}
	return used
}

// usage returns what the processes pids hold on each card, by index.
func (g *drmGPUs) usage(pids []int) map[int]int64 {
	bySlot := make(map[string]drmCard, len(g.cards))
	for _, c := range g.cards {
		bySlot[c.pdev] = c
	}
	var vram map[int]int64
	for _, cl := range drmClients(g.procRoot, pids, g.logBad) {
		c, ok := bySlot[cl.pdev]
		if !ok {
			continue // a GPU we do not read (NVIDIA's is NVML's)
		}
		if n := localBytes(cl, c.unified); n > 0 {
			if vram == nil {
				vram = map[int]int64{}
			}
			vram[c.index] += n
		}
	}
	return vram
}

// localBytes is what a client holds on the GPU. On a discrete GPU that is
// its local regions: amdgpu's "vram", xe's "vram0", "vram1"..., i915's
// "local0"...; the others (gtt, system, cpu, stolen) are system RAM. On a
// unified GPU every region is the GPU's memory, RAM as it is, so all count
// (each buffer is in one region at a time, so none is counted twice).
func localBytes(c drmClient, unified bool) int64 {
	var n int64
	for region, b := range c.regions {
		if unified || strings.HasPrefix(region, "vram") || strings.HasPrefix(region, "local") {
			n += b
		}
	}
	return n
}

func (g *drmGPUs) logBad(path string, err error) {
	g.log.Warn("ignoring a DRM fdinfo file hotswap cannot parse", zap.String("path", path), zap.Error(err))
}

// readBytesFile reads a sysfs file holding one unsigned number (decimal,
// or hexadecimal with 0x, as early xe printed its tile sizes).
func readBytesFile(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseUint(s, 0, 63)
	if err != nil {
		return 0, fmt.Errorf("%s: not a byte count: %q", path, s)
	}
	return int64(n), nil
}

// readUevent reads a uevent file's KEY=VALUE lines; empty when unreadable.
func readUevent(path string) map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
