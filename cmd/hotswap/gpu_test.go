package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// GPUs through the binary: hotswap reads a fake sysfs (HOTSWAP_SYSFS_ROOT)
// holding AMD cards as amdgpu describes them, plans the mock backends on
// them, and pins each by the variable its runtime reads, which the test
// reads back from the backend's own environment (/proc/PID/environ).
// The mocks hold no GPU memory: planning goes by their declared needs,
// as it does for any backend not yet measured.

const mib = int64(1) << 20

// fakeCard is an AMD GPU as amdgpu's sysfs files describe it.
type fakeCard struct {
	driver               string // "": amdgpu
	slot, pciID, product string
	tileVRAM             int64 // xe's tile0/physical_vram_size_bytes
	// vramVendor is mem_info_vram_vendor: the VRAM chips' maker, which an
	// APU has none of ("": no file).
	vramVendor          string
	vramTotal, gttTotal int64
}

// apuCard is a Strix Halo-like APU: a 512MiB carve-out and no VRAM chips,
// so its memory is RAM, and the GPU may map 960MiB of it (GTT).
var apuCard = fakeCard{slot: "0000:c5:00.0", pciID: "1002:1586", product: "AMD Radeon 8060S",
	vramTotal: 512 * mib, gttTotal: 960 * mib}

// arcCard is an Intel Arc B580 driven by xe, which prints its tile's
// memory size and nothing of what is used.
var arcCard = fakeCard{driver: "xe", slot: "0000:04:00.0", pciID: "8086:E20B", tileVRAM: 12 << 30}

// fakeSysfs writes a sysfs tree with the cards, card0 first, and points
// hotswap at it.
func fakeSysfs(t *testing.T, cards ...fakeCard) {
	t.Helper()
	root := t.TempDir()
	for i, c := range cards {
		dev := filepath.Join(root, "class", "drm", "card"+strconv.Itoa(i), "device")
		if c.driver == "xe" {
			files := map[string]string{
				"uevent":                         "DRIVER=xe\nPCI_CLASS=30000\nPCI_ID=" + c.pciID + "\nPCI_SLOT_NAME=" + c.slot + "\n",
				"tile0/physical_vram_size_bytes": strconv.FormatInt(c.tileVRAM, 10),
			}
			writeFiles(t, dev, files)
			continue
		}
		files := map[string]string{
			"uevent":              "DRIVER=amdgpu\nPCI_CLASS=30000\nPCI_ID=" + c.pciID + "\nPCI_SLOT_NAME=" + c.slot + "\n",
			"mem_info_vram_total": strconv.FormatInt(c.vramTotal, 10),
			"mem_info_vram_used":  "0",
			"mem_info_gtt_total":  strconv.FormatInt(c.gttTotal, 10),
			"mem_info_gtt_used":   "0",
			"product_name":        c.product,
		}
		if c.vramVendor != "" {
			files["mem_info_vram_vendor"] = c.vramVendor
		}
		writeFiles(t, dev, files)
	}
	t.Setenv("HOTSWAP_SYSFS_ROOT", root)
}

// writeFiles writes each file, by its path under dir, with its text and a
// newline, as sysfs prints them.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// gpuDevice is one device of GET /admin/memory.
type gpuDevice struct {
	Device, Name, Vendor string
	Unified              bool
	Total, Free          int64
	Available, Reserved  int64
	Limit                int64
	UsedBy               map[string]int64 `json:"used_by"`
}

func (c client) memory() map[string]gpuDevice {
	c.t.Helper()
	var devs []gpuDevice
	c.json("GET", "/admin/memory", "", 200, &devs)
	out := map[string]gpuDevice{}
	for _, d := range devs {
		out[d.Device] = d
	}
	return out
}

// backendEnv is the value of key in the environment pid was started with,
// and whether it is set there.
func backendEnv(t *testing.T, pid int, key string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		t.Fatalf("environment of pid %d: %v", pid, err)
	}
	for _, e := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// apuConfig: an APU whose GPU may use 960MiB of RAM, and a limit of 1200MiB
// on what all backends take of RAM. p, q and r take 400MiB on the GPU
// (RAM, then, as well), cpu 500MiB of RAM; past-budget can never fit the
// GPU's budget, past-ram never RAM (its 900MiB and its GPU's 400MiB).
const apuConfig = `
ports: 22000-22999
stop_timeout: 2s
scheduling: {eviction: lru} # what this test says of eviction is LRU's
admin_keys: [admin-key]
memory: {limit_ram: 1200MiB, reserve_ram: 0, reserve_vram: 0}
models:
  p: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {vram: 400MiB}}
  q: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {vram: 400MiB}}
  r: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {vram: 400MiB}}
  cpu: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 500MiB}}
  past-budget: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {vram: 1GiB}}
  past-ram: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 900MiB, vram: 400MiB}}
`

// TestAPUThroughTheBinary: on an APU, two models fit the GPU's budget and
// a third evicts the least recently used; a RAM-only model evicts one of
// them, since their GPU memory is RAM; what can never fit is refused, on
// the device it exceeds, with nothing stopped. /admin/memory and /metrics
// say so, and the backends are pinned with HIP_VISIBLE_DEVICES.
func TestAPUThroughTheBinary(t *testing.T) {
	b := build(t)
	fakeSysfs(t, apuCard)
	_, url := start(t, b, writeConfig(t, b, apuConfig))
	admin := client{t, url, "admin-key"}

	gpu := admin.memory()["gpu0"]
	if !gpu.Unified || gpu.Vendor != "amd" || gpu.Name != "AMD Radeon 8060S" || gpu.Total != 960*mib || gpu.Available != 960*mib {
		t.Fatalf("gpu0 before any model: %+v", gpu)
	}
	pids := map[string]int{}
	for _, m := range []string{"p", "q"} {
		pids[m] = admin.chat(m)
		if v, ok := backendEnv(t, pids[m], "HIP_VISIBLE_DEVICES"); v != "0" || !ok {
			t.Errorf("%s: HIP_VISIBLE_DEVICES=%q (set %v), want 0", m, v, ok)
		}
		if v, ok := backendEnv(t, pids[m], "CUDA_VISIBLE_DEVICES"); ok {
			t.Errorf("%s: CUDA_VISIBLE_DEVICES=%q on an AMD GPU", m, v)
		}
	}
	if got := keys(admin.loaded()); strings.Join(got, ",") != "p,q" {
		t.Fatalf("loaded %v: two 400MiB models fit a 960MiB budget", got)
	}
	mem := admin.memory()
	if gpu, ram := mem["gpu0"], mem["ram"]; gpu.Available != 160*mib || ram.Limit != 1200*mib || ram.Available != 400*mib {
		t.Errorf("with p and q: gpu0 %+v; ram %+v: want 160MiB of the budget and 400MiB of limit_ram available", gpu, ram)
	}
	for series, want := range map[string]float64{
		`hotswap_memory_total_bytes{device="gpu0"}`:     float64(960 * mib),
		`hotswap_memory_available_bytes{device="gpu0"}`: float64(160 * mib),
		`hotswap_memory_available_bytes{device="ram"}`:  float64(400 * mib),
	} {
		if got, ok := admin.metric(series); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", series, got, ok, want)
		}
	}

	admin.chat("r") // 160MiB of the budget left: p, the least recently used, goes
	if got := keys(admin.loaded()); strings.Join(got, ",") != "q,r" {
		t.Fatalf("after r: loaded %v, want q,r", got)
	}
	admin.chat("cpu") // 400MiB of RAM left under the limit, 500MiB needed: q goes
	if got := keys(admin.loaded()); strings.Join(got, ",") != "cpu,r" {
		t.Fatalf("after cpu: loaded %v, want cpu,r", got)
	}
	if v, ok := backendEnv(t, admin.loaded()["cpu"], "HIP_VISIBLE_DEVICES"); ok {
		t.Errorf("cpu, in RAM alone, is pinned: HIP_VISIBLE_DEVICES=%q", v)
	}

	before := admin.loaded()
	for model, says := range map[string]string{
		// r holds 400MiB of the budget; r and cpu 900MiB of limit_ram.
		"past-budget": "needs 1GiB of gpu0 but only 560MiB is free (400MiB more if",
		"past-ram":    "needs 1.3GiB of ram but only 300MiB is free (900MiB more if", // 900MiB + 400MiB
	} {
		code, body, _ := admin.do("POST", "/admin/models/"+model+"/load", "")
		if code != 503 || errCode(body) != "insufficient_memory" || !strings.Contains(string(body), says) {
			t.Errorf("%s: %d %s, want insufficient_memory saying %q", model, code, body, says)
		}
	}
	if after := admin.loaded(); strings.Join(keys(after), ",") != "cpu,r" || after["r"] != before["r"] || after["cpu"] != before["cpu"] {
		t.Errorf("refusals changed what runs: %v, was %v", after, before)
	}
	if got, _ := admin.metric(`hotswap_insufficient_memory_total{model="past-ram"}`); got != 1 {
		t.Errorf("past-ram's refusals counted %v", got)
	}
}

// TestPinningThroughTheBinary: an Intel discrete GPU (gpu0, 12GiB) and an
// AMD APU (gpu1). Each backend is pinned by its GPU's runtime's variable,
// with the index that runtime gives the GPU: gpu1 is HIP's device 0, the
// first AMD GPU. gpu_env names another variable (Vulkan's, which numbers
// every GPU); a model whose env sets the variable keeps its own value.
func TestPinningThroughTheBinary(t *testing.T) {
	b := build(t)
	fakeSysfs(t, arcCard, apuCard)
	_, url := start(t, b, writeConfig(t, b, `
ports: 22000-22999
stop_timeout: 2s
admin_keys: [admin-key]
memory: {reserve_ram: 0, reserve_vram: 0}
models:
  big: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {vram: 12GiB}}
  small: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {vram: 100MiB}}
  vk: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {vram: 100MiB}, gpu_env: GGML_VK_VISIBLE_DEVICES}
  own: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {vram: 100MiB}, env: [HIP_VISIBLE_DEVICES=0]}
`))
	admin := client{t, url, "admin-key"}
	mem := admin.memory()
	if d := mem["gpu0"]; d.Unified || d.Vendor != "intel" || d.Total != 12<<30 {
		t.Fatalf("gpu0: %+v", d)
	}
	if d := mem["gpu1"]; !d.Unified || d.Vendor != "amd" || d.Name != "AMD Radeon 8060S" {
		t.Fatalf("gpu1: %+v", d)
	}
	// big fits the Intel GPU alone, and fills it: the others go on the APU.
	for _, c := range []struct {
		model, device, key, value string
		unset                     []string
	}{
		{"big", "gpu0", "ONEAPI_DEVICE_SELECTOR", "level_zero:0", []string{"HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"}},
		{"small", "gpu1", "HIP_VISIBLE_DEVICES", "0", []string{"ONEAPI_DEVICE_SELECTOR", "CUDA_VISIBLE_DEVICES"}},
		{"vk", "gpu1", "GGML_VK_VISIBLE_DEVICES", "1", []string{"HIP_VISIBLE_DEVICES"}},
		{"own", "gpu1", "HIP_VISIBLE_DEVICES", "0", nil},
	} {
		pid := admin.chat(c.model)
		if d := admin.running()[c.model].Device; d != c.device {
			t.Errorf("%s on %s, want %s", c.model, d, c.device)
		}
		if v, ok := backendEnv(t, pid, c.key); v != c.value || !ok {
			t.Errorf("%s: %s=%q (set %v), want %q", c.model, c.key, v, ok, c.value)
		}
		for _, k := range c.unset {
			if v, ok := backendEnv(t, pid, k); ok {
				t.Errorf("%s: %s=%q set too", c.model, k, v)
			}
		}
	}
	b2, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(admin.loaded()["own"]), "environ"))
	if n := strings.Count(string(b2), "HIP_VISIBLE_DEVICES="); n != 1 {
		t.Errorf("own's HIP_VISIBLE_DEVICES is set %d times", n)
	}
	if got := keys(admin.loaded()); strings.Join(got, ",") != "big,own,small,vk" {
		t.Errorf("loaded %v: every model fits", got)
	}
}
