package probe

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const gib = int64(1) << 30

// fakeCard is one DRM card in a fake sysfs, laid out as the kernel lays it
// out: SysRoot/class/drm/<name>/device is a link to the PCI device's
// directory, whose uevent names the driver, PCI id and slot.
type fakeCard struct {
	name   string // "card0"
	slot   string // "0000:03:00.0"
	pciID  string // "1002:744C"
	driver string
	files  map[string]string // relative to the device directory
	onCard map[string]string // relative to the card directory
}

// writeSys builds a fake /sys holding cards and returns its root.
func writeSys(t *testing.T, cards ...fakeCard) string {
	t.Helper()
	root := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cards {
		dev := filepath.Join(root, "devices", "pci0000:00", c.slot)
		vendor, _, _ := strings.Cut(c.pciID, ":")
		write(filepath.Join(dev, "uevent"), "DRIVER="+c.driver+"\nPCI_CLASS=30000\nPCI_ID="+c.pciID+
			"\nPCI_SUBSYS_ID=1DA2:E471\nPCI_SLOT_NAME="+c.slot+"\nMODALIAS=pci:v0000"+vendor+"\n")
		write(filepath.Join(dev, "vendor"), "0x"+strings.ToLower(vendor)+"\n")
		for name, content := range c.files {
			write(filepath.Join(dev, name), content)
		}
		cardDir := filepath.Join(root, "class", "drm", c.name)
		if err := os.MkdirAll(cardDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(dev, filepath.Join(cardDir, "device")); err != nil {
			t.Fatal(err)
		}
		for name, content := range c.onCard {
			write(filepath.Join(cardDir, name), content)
		}
	}
	// Entries that are not cards: a connector and a render node.
	for _, other := range []string{"card0-DP-1", "renderD128", "version"} {
		if err := os.MkdirAll(filepath.Join(root, "class", "drm", other), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func n(v int64) string { return strconv.FormatInt(v, 10) + "\n" }

// The machine the fake sysfs describes, one of each kind of GPU read.
var (
	amdDiscrete = fakeCard{name: "card0", slot: "0000:03:00.0", pciID: "1002:744C", driver: "amdgpu",
		files: map[string]string{
			"mem_info_vram_total":  n(24 * gib),
			"mem_info_vram_used":   n(4 * gib),
			"mem_info_gtt_total":   n(32 * gib),
			"mem_info_gtt_used":    n(100 << 20),
			"mem_info_vram_vendor": "samsung\n",
			"product_name":         "Radeon RX 7900 XTX\n",
		}}
	// A Strix Halo with the BIOS's default 512 MiB carve-out: no VRAM
	// maker (the kernel hides the file), and no FRU product name.
	amdAPU = fakeCard{name: "card1", slot: "0000:c5:00.0", pciID: "1002:1586", driver: "amdgpu",
		files: map[string]string{
			"mem_info_vram_total": n(512 << 20),
			"mem_info_vram_used":  n(80 << 20),
			"mem_info_gtt_total":  n(64 * gib),
			"mem_info_gtt_used":   n(2 * gib),
		}}
	// An Arc B580 on xe: its tile's size in sysfs, nothing of what is used.
	intelXe = fakeCard{name: "card2", slot: "0000:08:00.0", pciID: "8086:E20B", driver: "xe",
		files: map[string]string{"tile0/physical_vram_size_bytes": n(12 * gib)}}
	// An integrated GPU on i915, at its fixed slot; card10 sorts after
	// card3 and card4, by number.
	intelIGPU = fakeCard{name: "card10", slot: "0000:00:02.0", pciID: "8086:A7A0", driver: "i915"}
	// NVIDIA's cards are NVML's, never read from sysfs.
	nvidiaCard = fakeCard{name: "card3", slot: "0000:01:00.0", pciID: "10DE:2684", driver: "nvidia"}
	// A card whose memory file is garbage: logged and left out.
	amdGarbage = fakeCard{name: "card4", slot: "0000:09:00.0", pciID: "1002:73BF", driver: "amdgpu",
		files: map[string]string{
			"mem_info_vram_total": "lots\n",
			"mem_info_vram_used":  n(0),
			"mem_info_gtt_total":  n(gib),
			"mem_info_gtt_used":   n(0),
		}}
)

func TestDRMDevices(t *testing.T) {
	sys := writeSys(t, amdDiscrete, amdAPU, intelXe, intelIGPU, nvidiaCard, amdGarbage)
	core, logs := observer.New(zapcore.DebugLevel)
	// Two NVIDIA GPUs before them, as NVML would number them.
	g, err := openDRM(sys, t.TempDir(), 2, map[string]int{VendorNVIDIA: 2}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	const ramTotal, ramAvail = 128 * gib, 100 * gib
	devs, err := g.devices(ramTotal, ramAvail)
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{
		{Index: 2, VendorIndex: 0, Name: "gpu2", Model: "Radeon RX 7900 XTX", Vendor: VendorAMD,
			Total: 24 * gib, Free: 20 * gib},
		{Index: 3, VendorIndex: 1, Name: "gpu3", Model: "AMD GPU 1002:1586", Vendor: VendorAMD, Unified: true,
			Total: 64 * gib, Free: 62 * gib},
		// Nothing under the fake /proc holds any of it.
		{Index: 4, VendorIndex: 0, Name: "gpu4", Model: "Intel GPU 8086:E20B", Vendor: VendorIntel,
			Total: 12 * gib, Free: 12 * gib},
		{Index: 5, VendorIndex: 1, Name: "gpu5", Model: "Intel GPU 8086:A7A0", Vendor: VendorIntel, Unified: true,
			Total: ramTotal, Free: ramAvail},
	}
	if len(devs) != len(want) {
		t.Fatalf("got %d devices, want %d:\n%+v", len(devs), len(want), devs)
	}
	for i := range want {
		if devs[i] != want[i] {
			t.Errorf("device %d:\n got %+v\nwant %+v", i, devs[i], want[i])
		}
	}
	skipped := logs.FilterMessageSnippet("left out").All()
	// The garbage card only: NVIDIA's is not ours to read, and says so to no one.
	if len(skipped) != 1 {
		t.Fatalf("want the garbage card logged once, got %+v", skipped)
	}
	if c, _ := skipped[0].ContextMap()["card"].(string); c != "card4" {
		t.Errorf("logged %+v, want card4", skipped[0].ContextMap())
	}
}

func TestAMDUnifiedRule(t *testing.T) {
	for _, tc := range []struct {
		name   string
		vram   int64
		vendor string // "-" for no file
		want   bool
	}{
		{"APU, vendor file hidden", 512 << 20, "-", true},
		{"APU, older kernel printing unknown", 2 * gib, "unknown\n", true},
		{"APU, empty vendor", 256 << 20, "\n", true},
		{"small discrete card with known chips", 2 * gib, "hynix\n", false},
		{"APU with a large BIOS carve-out: planned as its own VRAM", 16 * gib, "-", false},
		{"discrete card", 16 * gib, "micron\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := t.TempDir()
			if tc.vendor != "-" {
				if err := os.WriteFile(filepath.Join(dev, "mem_info_vram_vendor"), []byte(tc.vendor), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := amdUnified(dev, tc.vram); got != tc.want {
				t.Errorf("amdUnified = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIntelMemorySources(t *testing.T) {
	xeHex := fakeCard{name: "card0", slot: "0000:03:00.0", pciID: "8086:56A0", driver: "xe",
		files: map[string]string{ // early xe printed hex; two tiles add up
			"tile0/physical_vram_size_bytes": "0x200000000\n",
			"tile1/physical_vram_size_bytes": n(8 * gib),
		}}
	i915OutOfTree := fakeCard{name: "card1", slot: "0000:04:00.0", pciID: "8086:56A1", driver: "i915",
		onCard: map[string]string{"lmem_total_bytes": n(8 * gib)}}
	i915Mainline := fakeCard{name: "card2", slot: "0000:05:00.0", pciID: "8086:56A2", driver: "i915"}
	i915BadSize := fakeCard{name: "card3", slot: "0000:06:00.0", pciID: "8086:56A3", driver: "i915",
		files: map[string]string{"lmem_total_bytes": "-1\n"}}
	sys := writeSys(t, xeHex, i915OutOfTree, i915Mainline, i915BadSize)
	core, logs := observer.New(zapcore.DebugLevel)
	g, err := openDRM(sys, t.TempDir(), 0, nil, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	devs, err := g.devices(64*gib, 32*gib)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].Total != 16*gib || devs[1].Total != 8*gib || devs[0].Unified || devs[1].Unified {
		t.Fatalf("devices %+v, want xe's 16 GiB and i915's 8 GiB, discrete", devs)
	}
	skipped := logs.FilterMessageSnippet("left out").All()
	if len(skipped) != 2 {
		t.Fatalf("want the mainline i915 and the bad size logged, got %+v", skipped)
	}
	for _, e := range skipped {
		t.Logf("%s %v", e.Message, e.ContextMap())
	}
}

func TestOpenDRMWithoutGPUs(t *testing.T) {
	// No class/drm at all (a container, macOS), and one with only NVIDIA.
	for _, sys := range []string{t.TempDir(), writeSys(t, nvidiaCard)} {
		if g, err := openDRM(sys, t.TempDir(), 0, nil, zap.NewNop()); err == nil {
			t.Errorf("openDRM(%s) = %+v, want an error saying why", sys, g)
		}
	}
}

func TestAMDMemoryFileGoneAfterStart(t *testing.T) {
	sys := writeSys(t, amdDiscrete)
	g, err := openDRM(sys, t.TempDir(), 0, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sys, "devices", "pci0000:00", amdDiscrete.slot, "mem_info_vram_used"), []byte("?\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An error, as NVML's: planning on a guess would start backends that
	// then fail to load.
	if devs, err := g.devices(gib, gib); err == nil {
		t.Fatalf("devices = %+v, want an error", devs)
	}
}

// writeFD gives the fake process pid under procRoot an fd on target with
// the given fdinfo, as /proc/PID/fd/FD and /proc/PID/fdinfo/FD.
func writeFD(t *testing.T, procRoot string, pid, fd int, target, fdinfo string) {
	t.Helper()
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	for _, sub := range []string{"fd", "fdinfo"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(target, filepath.Join(dir, "fd", strconv.Itoa(fd))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fdinfo", strconv.Itoa(fd)), []byte(fdinfo), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fdinfo texts as the drivers print them.
func amdgpuOldFDInfo(slot, id string, vramKiB, gttKiB int64) string {
	return "pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t1062\ndrm-driver:\tamdgpu\ndrm-pdev:\t" + slot +
		"\npasid:\t32771\ndrm-client-id:\t" + id +
		"\ndrm-memory-vram:\t" + strconv.FormatInt(vramKiB, 10) + " KiB\ndrm-memory-gtt: \t" + strconv.FormatInt(gttKiB, 10) +
		" KiB\ndrm-memory-cpu: \t0 KiB\namd-memory-visible-vram:\t0 KiB\ndrm-engine-gfx:\t1234 ns\n"
}

func xeFDInfo(slot, id string, vram string) string {
	return "pos:\t0\nflags:\t0100002\nmnt_id:\t26\nino:\t685\ndrm-driver:\txe\ndrm-client-id:\t" + id +
		"\ndrm-pdev:\t" + slot + "\ndrm-total-system:\t0\ndrm-resident-system:\t0\ndrm-total-gtt:\t192 KiB\ndrm-resident-gtt:\t192 KiB" +
		"\ndrm-total-vram0:\t" + vram + "\ndrm-shared-vram0:\t16 MiB\ndrm-active-vram0:\t0\ndrm-resident-vram0:\t" + vram +
		"\ndrm-cycles-rcs:\t28257900\ndrm-total-cycles-rcs:\t7655183225\n"
}

func TestDRMUsage(t *testing.T) {
	sys := writeSys(t, amdDiscrete, amdAPU, intelXe, intelIGPU)
	proc := t.TempDir()
	core, logs := observer.New(zapcore.DebugLevel)
	g, err := openDRM(sys, proc, 0, nil, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	// A backend (100) and its child (101) share client 7 on the discrete
	// AMD card through three fds (inherited and dup'ed): counted once.
	writeFD(t, proc, 100, 5, "/dev/dri/renderD128", amdgpuOldFDInfo(amdDiscrete.slot, "7", 4<<20, 1<<20))
	writeFD(t, proc, 100, 6, "/dev/dri/renderD128", amdgpuOldFDInfo(amdDiscrete.slot, "7", 4<<20, 1<<20))
	writeFD(t, proc, 101, 5, "/dev/dri/renderD128", amdgpuOldFDInfo(amdDiscrete.slot, "7", 4<<20, 1<<20))
	// The child's own client on the same card: a newer amdgpu, where
	// resident wins over total, in MiB.
	writeFD(t, proc, 101, 7, "/dev/dri/renderD128", "drm-driver: amdgpu\ndrm-pdev: "+amdDiscrete.slot+
		"\ndrm-client-id: 9\ndrm-total-vram: 3072 MiB\ndrm-resident-vram: 2048 MiB\ndrm-total-gtt: 10 MiB\n")
	// On the APU every region counts: VRAM carve-out and GTT, in bytes.
	writeFD(t, proc, 101, 8, "/dev/dri/renderD129", "drm-driver: amdgpu\ndrm-pdev: "+amdAPU.slot+
		"\ndrm-client-id: 3\ndrm-resident-vram: 1048576\ndrm-resident-gtt: 5242880\n")
	// xe: only vram0 is the card's memory; drm-total-cycles is not memory.
	writeFD(t, proc, 100, 9, "/dev/dri/card2", xeFDInfo(intelXe.slot, "3", "1024 MiB"))
	// Not DRM: a socket, and a DRM fd of an NVIDIA card (NVML's business).
	writeFD(t, proc, 100, 3, "socket:[12345]", "pos:\t0\nflags:\t02\n")
	writeFD(t, proc, 100, 10, "/dev/dri/card3", "drm-driver: nvidia-drm\ndrm-pdev: 0000:01:00.0\ndrm-client-id: 1\ndrm-total-vram: 5 GiB\n")
	// A garbage fdinfo: logged and skipped, the rest still counted.
	writeFD(t, proc, 101, 11, "/dev/dri/renderD128", "drm-driver: amdgpu\ndrm-pdev: "+amdDiscrete.slot+
		"\ndrm-client-id: 12\ndrm-memory-vram: many KiB\n")
	// Another process, not in the tree, on the xe card.
	writeFD(t, proc, 200, 4, "/dev/dri/card2", xeFDInfo(intelXe.slot, "4", "3 GiB"))

	got := g.usage([]int{100, 101, 999}) // 999 has exited
	want := map[int]int64{
		0: 4*gib + 2*gib, // client 7's 4 GiB once, client 9's 2 GiB
		1: 6 << 20,
		2: gib,
	}
	if len(got) != len(want) {
		t.Fatalf("usage %v, want %v", got, want)
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("gpu%d: %d bytes, want %d", i, got[i], w)
		}
	}
	if bad := logs.FilterMessageSnippet("cannot parse").All(); len(bad) != 1 {
		t.Errorf("want the garbage fdinfo logged once, got %+v", logs.All())
	}

	// The xe card's free memory is its size less what every client we can
	// see holds there: 1 GiB in the tree and 3 GiB in pid 200.
	devs, err := g.devices(64*gib, 32*gib)
	if err != nil {
		t.Fatal(err)
	}
	if xe := devs[2]; xe.Total != 12*gib || xe.Free != 8*gib {
		t.Errorf("xe card %+v, want 8 of 12 GiB free", xe)
	}
}

func TestParseFDInfo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		text    string
		ok      bool
		regions map[string]int64
		err     bool
	}{
		{name: "older amdgpu, KiB", text: amdgpuOldFDInfo("0000:03:00.0", "1", 2048, 1),
			ok: true, regions: map[string]int64{"vram": 2 << 20, "gtt": 1 << 10, "cpu": 0}},
		{name: "xe, KiB, MiB and cycles", text: xeFDInfo("0000:03:00.0", "1", "23992 KiB"),
			ok: true, regions: map[string]int64{"system": 0, "gtt": 192 << 10, "vram0": 23992 << 10}},
		{name: "i915 regions, plain bytes", text: "drm-driver: i915\ndrm-client-id: 4\ndrm-pdev: 0000:00:02.0\n" +
			"drm-total-system0: 4096\ndrm-resident-system0: 1234\ndrm-total-stolen-system0: 0\n",
			ok: true, regions: map[string]int64{"system0": 1234, "stolen-system0": 0}},
		{name: "resident before total, whatever the order", text: "drm-driver: amdgpu\ndrm-client-id: 1\n" +
			"drm-resident-vram: 1 MiB\ndrm-total-vram: 3 MiB\ndrm-memory-gtt: 2\ndrm-total-gtt: 5\n",
			ok: true, regions: map[string]int64{"vram": 1 << 20, "gtt": 2}},
		{name: "not DRM", text: "pos:\t0\nflags:\t02004002\nmnt_id:\t15\nino:\t3\neventfd-count: 0\n"},
		{name: "DRM without client id", text: "drm-driver: amdgpu\ndrm-memory-vram: 1 KiB\n"},
		{name: "empty", text: ""},
		{name: "garbage number", text: "drm-driver: xe\ndrm-client-id: 1\ndrm-total-vram0: 12x KiB\n", err: true},
		{name: "negative", text: "drm-driver: xe\ndrm-client-id: 1\ndrm-total-vram0: -5\n", err: true},
		{name: "unknown unit", text: "drm-driver: xe\ndrm-client-id: 1\ndrm-total-vram0: 5 TiB\n", err: true},
		{name: "overflow", text: "drm-driver: xe\ndrm-client-id: 1\ndrm-total-vram0: 9007199254740993 MiB\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok, err := parseFDInfo([]byte(tc.text))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if len(c.regions) != len(tc.regions) {
				t.Fatalf("regions %v, want %v", c.regions, tc.regions)
			}
			for r, w := range tc.regions {
				if c.regions[r] != w {
					t.Errorf("region %s: %d, want %d", r, c.regions[r], w)
				}
			}
		})
	}
}

// The whole probe over fake roots: NVML is not opened, the fake cards are
// the GPUs, and Usage reads fdinfo from the fake /proc for the real pids of
// a real process tree.
func TestMemoryWithFakeRoots(t *testing.T) {
	sys := writeSys(t, amdDiscrete, amdAPU, intelXe, intelIGPU)
	proc := t.TempDir()
	core, logs := observer.New(zapcore.DebugLevel)
	m := NewMemoryWith(zap.New(core), MemoryOptions{SysRoot: sys, ProcRoot: proc})
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	devs, err := m.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 5 || devs[0].Name != "ram" {
		t.Fatalf("devices %+v, want RAM and the four fake GPUs", devs)
	}
	for i, d := range devs[1:] {
		if d.Index != i || d.Name != "gpu"+strconv.Itoa(i) || d.Vendor == "" {
			t.Errorf("device %d is %+v", i+1, d)
		}
	}
	if found := logs.FilterMessage("GPU found").Len(); found != 4 {
		t.Errorf("logged %d GPUs found, want 4: %+v", found, logs.All())
	}
	if m.UnifiedMemory() {
		t.Error("UnifiedMemory is true on linux: it stays as it was, Device.Unified says more")
	}

	// sh and its child, the holder, share one client on the AMD card.
	script := `exec 3<&0; "$0" "$@" <&3 3<&- & wait`
	cmd := startHolder(t, 1, "sh", append([]string{"-c", script, os.Args[0]}, holderArgs()...)...)
	pids, err := processTree(context.Background(), cmd.Process.Pid)
	if err != nil || len(pids) < 2 {
		t.Fatalf("tree of sh: %v, %v", pids, err)
	}
	for _, pid := range pids {
		writeFD(t, proc, pid, 5, "/dev/dri/renderD128", amdgpuOldFDInfo(amdDiscrete.slot, "7", 1<<20, 0))
	}
	writeFD(t, proc, pids[len(pids)-1], 6, "/dev/dri/renderD129", xeFDInfo(intelXe.slot, "2", "512 MiB"))
	u, err := m.Usage(context.Background(), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.VRAM) != 2 || u.VRAM[0] != gib || u.VRAM[2] != 512<<20 {
		t.Errorf("VRAM %v, want 1 GiB on gpu0 and 512 MiB on gpu2", u.VRAM)
	}
	if u.RAM <= 0 {
		t.Errorf("RAM %d: RSS still comes from the real /proc", u.RAM)
	}
}

func TestNewMemoryWithEmptySysRoot(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	m := NewMemoryWith(zap.New(core), MemoryOptions{SysRoot: t.TempDir(), ProcRoot: t.TempDir()})
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	devs, err := m.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 {
		t.Fatalf("devices %+v, want RAM only", devs)
	}
	entries := logs.All()
	if len(entries) != 1 || entries[0].Level != zapcore.InfoLevel {
		t.Fatalf("want one Info entry, got %+v", entries)
	}
	t.Logf("logged: %s: %v", entries[0].Message, entries[0].ContextMap()["reason"])
}
