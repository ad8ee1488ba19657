package swapper_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/swapper"
)

// device is one device of sw's memory report, read afresh.
func device(t *testing.T, sw *swapper.Swapper, name string) swapper.DeviceReport {
	t.Helper()
	for _, d := range sw.Memory(true) {
		if d.Device == name {
			return d
		}
	}
	t.Fatalf("no device %s in the report", name)
	return swapper.DeviceReport{}
}

// settled waits until every model named is measured in the report (a
// backend is measured just after it is ready), and returns the report.
func settled(t *testing.T, sw *swapper.Swapper, dev string, models ...string) swapper.DeviceReport {
	t.Helper()
	var d swapper.DeviceReport
	mocktest.Eventually(5*time.Second, func() bool {
		d = device(t, sw, dev)
		for _, m := range models {
			if d.Used[m] <= 0 {
				return false
			}
		}
		return len(d.Used) == len(models)
	})
	return d
}

// pinVar is the value of key in the environment of model's backend, and
// whether it is set.
func pinVar(sw *swapper.Swapper, model, key string) (string, bool) {
	st, _ := sw.Status(model)
	for _, e := range environ(st.Pid) {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// apuModels run on a 128GiB APU whose GPU may use 96GiB of it: p, q and r
// take 40GiB of VRAM and 1GiB of RAM each, cpu 50GiB of RAM, and the two
// big ones can never fit (past the GPU's budget; past RAM).
const apuModels = `
models:
  p: {cmd: "MOCK -port ${PORT} -model p", memory: {ram: 1GiB, vram: 40GiB}}
  q: {cmd: "MOCK -port ${PORT} -model q", memory: {ram: 1GiB, vram: 40GiB}}
  r: {cmd: "MOCK -port ${PORT} -model r", memory: {ram: 1GiB, vram: 40GiB}}
  cpu: {cmd: "MOCK -port ${PORT} -model cpu", memory: {ram: 50GiB}}
  past-budget: {cmd: "MOCK -port ${PORT} -model pb", memory: {vram: 100GiB}}
  past-ram: {cmd: "MOCK -port ${PORT} -model pr", memory: {ram: 100GiB, vram: 40GiB}}
`

func apu() *probe.Fake {
	fake := probe.NewFake(mockExe, 128*gib)
	fake.AddGPU(probe.Device{Vendor: probe.VendorAMD, Unified: true, Model: "AMD Radeon 8060S", Total: 96 * gib})
	for _, m := range []string{"p", "q", "r"} {
		fake.Script(m, probe.Usage{RAM: gib, VRAM: map[int]int64{0: 40 * gib}})
	}
	fake.Script("cpu", probe.Usage{RAM: 50 * gib})
	return fake
}

// TestUnifiedAPU: on an APU, models on the GPU take its budget and RAM
// both: two 40GiB ones fit in a 96GiB budget, a third evicts one; a
// RAM-only model competes with them for RAM; the report counts their VRAM
// in RAM; what can never fit is refused on the device it exceeds, with
// nothing stopped; and the backends are pinned by HIP's variable.
func TestUnifiedAPU(t *testing.T) {
	sw, st := memSwapper(t, apuModels, apu(), nil)
	use(t, sw, "p")
	use(t, sw, "q")
	if got := states(sw, "p", "q"); got != "p=ready q=ready" {
		t.Fatalf("%s: two 40GiB models fit a 96GiB budget", got)
	}
	ram := settled(t, sw, "ram", "p", "q")
	gpu := settled(t, sw, "gpu0", "p", "q")
	if ram.Used["p"] != 41*gib || ram.Available != 46*gib {
		t.Errorf("ram: p uses %d, %d available; want 41GiB (its RAM and VRAM), 46GiB", ram.Used["p"], ram.Available)
	}
	if !gpu.Unified || gpu.Vendor != probe.VendorAMD || gpu.Name != "AMD Radeon 8060S" || gpu.Total != 96*gib ||
		gpu.Used["p"] != 40*gib || gpu.Available != 16*gib {
		t.Errorf("gpu0: %+v", gpu)
	}
	for _, m := range []string{"p", "q"} {
		if v, ok := pinVar(sw, m, "HIP_VISIBLE_DEVICES"); v != "0" || !ok {
			t.Errorf("%s: HIP_VISIBLE_DEVICES=%q (set %v), want 0", m, v, ok)
		}
		if v, ok := pinVar(sw, m, "CUDA_VISIBLE_DEVICES"); ok {
			t.Errorf("%s: CUDA_VISIBLE_DEVICES=%q on an AMD GPU", m, v)
		}
	}

	use(t, sw, "r") // 16GiB left of the budget: p, the least recently used, goes
	if got := states(sw, "p", "q", "r"); got != "p=stopped q=ready r=ready" {
		t.Fatalf("after r: %s", got)
	}
	use(t, sw, "cpu") // 46GiB of RAM free, 50 needed: q's RAM and VRAM are RAM
	if got := states(sw, "q", "r", "cpu"); got != "q=stopped r=ready cpu=ready" {
		t.Fatalf("after cpu: %s", got)
	}
	settled(t, sw, "ram", "r", "cpu")
	starts := st.Starts()

	var ie *swapper.InsufficientMemoryError
	if _, err := sw.Acquire(context.Background(), "past-budget"); !errors.As(err, &ie) ||
		ie.Device != "gpu0" || ie.Need != 100*gib {
		t.Errorf("past-budget: %v, want a refusal needing 100GiB of gpu0", err)
	}
	if _, err := sw.Acquire(context.Background(), "past-ram"); !errors.As(err, &ie) ||
		ie.Device != "ram" || ie.Need != 140*gib || ie.Free != 128*gib-91*gib || ie.Freeable != 91*gib {
		t.Errorf("past-ram: %v (%+v), want a refusal needing 140GiB of ram", err, ie)
	}
	if got := states(sw, "r", "cpu"); got != "r=ready cpu=ready" || st.Starts() != starts {
		t.Errorf("%s after %d starts (%d before): a refusal stops and starts nothing", got, st.Starts(), starts)
	}
}

// TestMixedVendors: a discrete NVIDIA GPU (gpu0) and an AMD APU (gpu1) in
// one machine. Each backend is pinned by its GPU's runtime's variable and
// index (gpu1 is HIP's device 0), which the fake, like the runtimes,
// reads to put its memory on the right GPU; gpu_env picks another
// variable; the model's own env is left alone.
func TestMixedVendors(t *testing.T) {
	fake := probe.NewFake(mockExe, 64*gib)
	fake.AddGPU(probe.Device{Vendor: probe.VendorNVIDIA, Model: "NVIDIA RTX 4090", Total: 24 * gib})
	fake.AddGPU(probe.Device{Vendor: probe.VendorAMD, Unified: true, Model: "AMD Radeon 780M", Total: 32 * gib})
	for _, m := range []string{"a", "b", "vk", "own"} {
		fake.Script(m, probe.Usage{VRAM: map[int]int64{0: 20 * gib}})
	}
	sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {vram: 20GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", memory: {vram: 20GiB}}
  vk: {cmd: "MOCK -port ${PORT} -model vk", memory: {vram: 20GiB}, gpu_env: GGML_VK_VISIBLE_DEVICES}
  own: {cmd: "MOCK -port ${PORT} -model own", memory: {vram: 20GiB}, env: [HIP_VISIBLE_DEVICES=0]}
`, fake, nil)
	use(t, sw, "a") // either fits: the discrete GPU, whose memory is no other model's
	use(t, sw, "b") // gpu0 is full: the APU
	for _, c := range []struct{ model, device, key, value string }{
		{"a", "gpu0", "CUDA_VISIBLE_DEVICES", "0"},
		{"a", "gpu0", "CUDA_DEVICE_ORDER", "PCI_BUS_ID"},
		{"b", "gpu1", "HIP_VISIBLE_DEVICES", "0"},
	} {
		if s, _ := sw.Status(c.model); s.Device != c.device {
			t.Errorf("%s on %s, want %s", c.model, s.Device, c.device)
		}
		if v, _ := pinVar(sw, c.model, c.key); v != c.value {
			t.Errorf("%s: %s=%q, want %q", c.model, c.key, v, c.value)
		}
	}
	if gpu1 := settled(t, sw, "gpu1", "b"); gpu1.Used["b"] != 20*gib || gpu1.Available != 12*gib {
		t.Errorf("gpu1: %+v: b's 20GiB, seen where HIP's device 0 is", gpu1)
	}
	if ram := settled(t, sw, "ram", "b"); ram.Used["b"] != 20*gib || ram.Free != 44*gib {
		t.Errorf("ram: %+v: b's VRAM on the APU is RAM; a's on the discrete GPU is not", ram)
	}

	sw.Unload(context.Background(), "b", false)
	use(t, sw, "vk") // gpu0 is full: the APU, which Vulkan lists second of all GPUs
	if v, _ := pinVar(sw, "vk", "GGML_VK_VISIBLE_DEVICES"); v != "1" {
		t.Errorf("vk: GGML_VK_VISIBLE_DEVICES=%q, want 1", v)
	}
	if _, ok := pinVar(sw, "vk", "HIP_VISIBLE_DEVICES"); ok {
		t.Error("vk: HIP_VISIBLE_DEVICES set beside gpu_env's variable")
	}
	sw.Unload(context.Background(), "vk", false)
	use(t, sw, "own")
	if v, _ := pinVar(sw, "own", "HIP_VISIBLE_DEVICES"); v != "0" {
		t.Errorf("own: HIP_VISIBLE_DEVICES=%q, want its env's 0", v)
	}
	if env := environ(pidOf(sw, "own")); strings.Count(strings.Join(env, "\n"), "HIP_VISIBLE_DEVICES=") != 1 {
		t.Errorf("own: HIP_VISIBLE_DEVICES set twice: %q", env)
	}
}

func pidOf(sw *swapper.Swapper, model string) int {
	st, _ := sw.Status(model)
	return st.Pid
}
