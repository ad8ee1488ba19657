package swapper

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const gib = int64(1) << 30

func names(cs []candidate) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.model)
	}
	return strings.Join(out, ",")
}

func TestChoosePlan(t *testing.T) {
	// Loaded models, least recently used first.
	lru := []candidate{
		{model: "old", ram: 2 * gib, used: 0},
		{model: "mid", ram: 3 * gib, used: 1},
		{model: "new", ram: 4 * gib, used: 2},
	}
	const mib = gib >> 10
	cases := []struct {
		name    string
		in      planInput
		gpu     int
		victims string
		short   string // device of the refusal, if refused
	}{
		{"fits without eviction", planInput{ram: 1 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 2 * gib}, loaded: lru},
			ramDevice, "", ""},
		{"evicts only the least recently used needed", planInput{ram: 3 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 2 * gib}, loaded: lru},
			ramDevice, "old", ""},
		{"one that is enough rather than two older ones", planInput{ram: 6 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 2 * gib}, loaded: lru},
			ramDevice, "new", ""},
		{"the two least recently used when one is not enough", planInput{ram: 7 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 2 * gib}, loaded: lru},
			ramDevice, "old,mid", ""},
		// The case: under an 800MiB limit, S (100MiB, older) and M
		// (350MiB) loaded, L (650MiB) asked for: M alone makes room.
		{"no model that turned out unneeded", planInput{ram: 650 * mib, pin: ramDevice, free: map[int]int64{ramDevice: 350 * mib},
			loaded: []candidate{{model: "S", ram: 100 * mib, used: 0}, {model: "M", ram: 350 * mib, used: 1}}},
			ramDevice, "M", ""},
		{"two idle ones rather than one busy", planInput{ram: 4 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 0},
			loaded: []candidate{{model: "busy", ram: 4 * gib, busy: true, used: 0}, {model: "idle1", ram: 2 * gib, used: 1}, {model: "idle2", ram: 2 * gib, used: 2}}},
			ramDevice, "idle1,idle2", ""},
		{"the least freed beyond the need, all else equal", planInput{ram: 3 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 0},
			loaded: []candidate{{model: "a", ram: 4 * gib}, {model: "b", ram: 3 * gib}, {model: "c", ram: 5 * gib}}},
			ramDevice, "b", ""},
		{"refuses what can never fit", planInput{ram: 12 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 2 * gib}, loaded: lru},
			ramDevice, "", "ram"},
		{"idle before busy", planInput{ram: 3 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 1 * gib}, loaded: []candidate{
			{model: "busy-old", ram: 4 * gib, busy: true, used: 0}, {model: "idle-new", ram: 4 * gib, used: 1}}},
			ramDevice, "idle-new", ""},
		{"busy ones when idle ones are not enough", planInput{ram: 6 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 1 * gib}, loaded: []candidate{
			{model: "busy-old", ram: 4 * gib, busy: true, used: 0}, {model: "idle-new", ram: 4 * gib, used: 1}}},
			ramDevice, "busy-old,idle-new", ""},
		{"skips victims that free nothing where it is short", planInput{vram: 6 * gib, pin: ramDevice,
			free:   map[int]int64{ramDevice: 10 * gib, 0: 1 * gib},
			loaded: []candidate{{model: "cpu-only", ram: 4 * gib}, {model: "on-gpu0", vram: 8 * gib, gpu: 0}}},
			0, "on-gpu0", ""},
		{"GPU with the fewest evictions", planInput{vram: 6 * gib, pin: ramDevice,
			free:   map[int]int64{ramDevice: 10 * gib, 0: 1 * gib, 1: 7 * gib},
			loaded: []candidate{{model: "on-gpu0", vram: 8 * gib, gpu: 0}}},
			1, "", ""},
		{"evicts on the only GPU that can take it", planInput{vram: 20 * gib, pin: ramDevice,
			free:   map[int]int64{ramDevice: 10 * gib, 0: 2 * gib, 1: 10 * gib},
			loaded: []candidate{{model: "a0", vram: 20 * gib, gpu: 0}, {model: "b1", vram: 4 * gib, gpu: 1}}},
			0, "a0", ""},
		{"ties go to the GPU with most left", planInput{vram: 2 * gib, pin: ramDevice,
			free: map[int]int64{ramDevice: 10 * gib, 0: 3 * gib, 1: 9 * gib}},
			1, "", ""},
		{"pinned device only", planInput{vram: 2 * gib, pin: 0,
			free:   map[int]int64{ramDevice: 10 * gib, 0: 1 * gib, 1: 9 * gib},
			loaded: []candidate{{model: "a0", vram: 2 * gib, gpu: 0}}},
			0, "a0", ""},
		{"RAM and VRAM both short", planInput{ram: 4 * gib, vram: 4 * gib, pin: ramDevice,
			free:   map[int]int64{ramDevice: 1 * gib, 0: 1 * gib},
			loaded: []candidate{{model: "ram-hog", ram: 5 * gib}, {model: "gpu-hog", vram: 5 * gib, gpu: 0}}},
			0, "ram-hog,gpu-hog", ""},
		{"no GPU for a VRAM model", planInput{vram: 1 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 10 * gib}},
			0, "", "gpu"},
		{"pinned to a GPU that does not exist", planInput{vram: 1 * gib, pin: 3, free: map[int]int64{ramDevice: 10 * gib, 0: 10 * gib}},
			0, "", "gpu3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.model = "target"
			p, err := choosePlan(c.in)
			if c.short != "" {
				var ie *InsufficientMemoryError
				if !errors.As(err, &ie) || ie.Device != c.short {
					t.Fatalf("err %v, want a refusal on %s", err, c.short)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.gpu != c.gpu && c.in.vram > 0 || names(p.victims) != c.victims {
				t.Errorf("plan gpu %d victims %q; want gpu %d victims %q", p.gpu, names(p.victims), c.gpu, c.victims)
			}
		})
	}
}

// TestChoosePlanUnified: a unified GPU's memory is RAM (an APU, Apple
// Silicon). A model placed on one needs its VRAM from the GPU's budget and
// from RAM; a candidate's ram counts the VRAM it holds there (stopping it
// frees both), as planInputLocked builds it. The machine: 128GiB of RAM,
// 96GiB of it the GPU's budget, 8GiB reserved, so 120GiB of RAM free.
func TestChoosePlanUnified(t *testing.T) {
	apu := map[int]bool{0: true}
	// a and b: 40GiB models on the APU's GPU (a the least recently used).
	a := candidate{model: "a", ram: 40 * gib, vram: 40 * gib, gpu: 0, used: 0}
	b := candidate{model: "b", ram: 40 * gib, vram: 40 * gib, gpu: 0, used: 1}
	cases := []struct {
		name    string
		in      planInput
		gpu     int
		victims string
		short   string // device of the refusal, if refused
		need    int64  // the refusal's need
	}{
		{"the first 40GiB model fits", planInput{vram: 40 * gib, pin: ramDevice, unified: apu,
			free: map[int]int64{ramDevice: 120 * gib, 0: 96 * gib}},
			0, "", "", 0},
		{"the second fits beside it", planInput{vram: 40 * gib, pin: ramDevice, unified: apu,
			free: map[int]int64{ramDevice: 80 * gib, 0: 56 * gib}, loaded: []candidate{a}},
			0, "", "", 0},
		{"a third is past the GPU's budget: the least recently used goes", planInput{vram: 40 * gib, pin: ramDevice, unified: apu,
			free: map[int]int64{ramDevice: 40 * gib, 0: 16 * gib}, loaded: []candidate{a, b}},
			0, "a", "", 0},
		{"a third beside two pinned ones is refused on the GPU", planInput{vram: 40 * gib, pin: ramDevice, unified: apu,
			free: map[int]int64{ramDevice: 40 * gib, 0: 16 * gib}},
			0, "", "gpu0", 40 * gib},
		{"a RAM-only model takes RAM the GPU's models hold", planInput{ram: 50 * gib, pin: ramDevice, unified: apu,
			free: map[int]int64{ramDevice: 40 * gib, 0: 16 * gib}, loaded: []candidate{a, b}},
			ramDevice, "a", "", 0},
		{"a GPU model takes RAM a RAM-only model holds", planInput{vram: 40 * gib, pin: ramDevice, unified: apu,
			free:   map[int]int64{ramDevice: 30 * gib, 0: 96 * gib},
			loaded: []candidate{{model: "cpu", ram: 90 * gib, gpu: ramDevice}}},
			0, "cpu", "", 0},
		{"its RAM and VRAM both come from RAM", planInput{ram: 10 * gib, vram: 40 * gib, pin: ramDevice, unified: apu,
			free:   map[int]int64{ramDevice: 45 * gib, 0: 96 * gib},
			loaded: []candidate{{model: "small", ram: 6 * gib, used: 0}, {model: "big", ram: 70 * gib, used: 1}}},
			0, "small", "", 0},
		{"refused in RAM when RAM cannot hold it, whatever the budget", planInput{ram: 10 * gib, vram: 40 * gib, pin: ramDevice, unified: apu,
			free: map[int]int64{ramDevice: 45 * gib, 0: 96 * gib}, loaded: []candidate{{model: "small", ram: 4 * gib}}},
			0, "", "ram", 50 * gib},
		{"a discrete GPU's VRAM is not RAM (the same, not unified)", planInput{ram: 10 * gib, vram: 40 * gib, pin: ramDevice,
			free: map[int]int64{ramDevice: 45 * gib, 0: 96 * gib}, loaded: []candidate{{model: "small", ram: 4 * gib}}},
			0, "", "", 0},
		{"a discrete GPU rather than an APU whose RAM is short", planInput{vram: 20 * gib, pin: ramDevice, unified: map[int]bool{1: true},
			free: map[int]int64{ramDevice: 10 * gib, 0: 24 * gib, 1: 64 * gib}},
			0, "", "", 0},
		{"the APU when the discrete GPU is full", planInput{vram: 20 * gib, pin: ramDevice, unified: map[int]bool{1: true},
			free:   map[int]int64{ramDevice: 30 * gib, 0: 4 * gib, 1: 64 * gib},
			loaded: []candidate{{model: "d0", vram: 20 * gib, gpu: 0}}},
			1, "", "", 0},
		{"a discrete GPU rather than an APU with more left", planInput{vram: 8 * gib, pin: ramDevice, unified: map[int]bool{1: true},
			free: map[int]int64{ramDevice: 100 * gib, 0: 10 * gib, 1: 64 * gib}},
			0, "", "", 0},
		{"the APU when it evicts fewer", planInput{vram: 8 * gib, pin: ramDevice, unified: map[int]bool{1: true},
			free:   map[int]int64{ramDevice: 100 * gib, 0: 4 * gib, 1: 64 * gib},
			loaded: []candidate{{model: "d0", vram: 20 * gib, gpu: 0}}},
			1, "", "", 0},
		{"between two unified GPUs, the one with the most budget left", planInput{vram: 8 * gib, pin: ramDevice, unified: map[int]bool{0: true, 1: true},
			free: map[int]int64{ramDevice: 100 * gib, 0: 10 * gib, 1: 64 * gib}},
			1, "", "", 0},
		{"a discrete GPU when the APU's RAM is short", planInput{vram: 8 * gib, pin: ramDevice, unified: map[int]bool{1: true},
			free: map[int]int64{ramDevice: 12 * gib, 0: 20 * gib, 1: 64 * gib}},
			0, "", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.model = "target"
			p, err := choosePlan(c.in)
			if c.short != "" {
				var ie *InsufficientMemoryError
				if !errors.As(err, &ie) || ie.Device != c.short || ie.Need != c.need {
					t.Fatalf("err %v, want a refusal on %s needing %d", err, c.short, c.need)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.gpu != c.gpu || names(p.victims) != c.victims {
				t.Errorf("plan gpu %d victims %q; want gpu %d victims %q", p.gpu, names(p.victims), c.gpu, c.victims)
			}
		})
	}
}

// TestChoosePlanManyCandidates: past maxSearch candidates, victims are
// chosen greedily, and none that turned out unneeded is kept.
func TestChoosePlanManyCandidates(t *testing.T) {
	var loaded []candidate
	for i := range maxSearch + 4 {
		loaded = append(loaded, candidate{model: fmt.Sprintf("m%02d", i), ram: 1 * gib, used: i})
	}
	loaded[0].ram = 1 << 20 // the oldest frees almost nothing
	p, err := choosePlan(planInput{model: "target", ram: 3 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 0}, loaded: loaded})
	if err != nil || names(p.victims) != "m01,m02,m03" {
		t.Errorf("victims %q, %v", names(p.victims), err)
	}
}

func TestInsufficientMemoryMessage(t *testing.T) {
	e := &InsufficientMemoryError{Model: "big", Device: "gpu0", Need: 80 * gib, Free: 3 * gib / 2, Freeable: 20 * gib}
	want := `model "big" needs 80GiB of gpu0 but only 1.5GiB is free (20GiB more if every other unpinned model were stopped), so it cannot be started`
	if e.Error() != want {
		t.Errorf("got  %s\nwant %s", e.Error(), want)
	}
}

// TestPrefetchBudget: a prefetch reads no more than is free now (the
// victims still serve, and their pages stay cached) nor than the plan
// would leave free (what is read must survive the start).
func TestPrefetchBudget(t *testing.T) {
	const mib = int64(1) << 20
	a := candidate{model: "a", ram: 6 * gib, gpu: ramDevice}
	gpuA := candidate{model: "a", ram: 1 * gib, vram: 20 * gib, gpu: 0}
	for _, c := range []struct {
		name    string
		in      planInput
		victims []candidate
		want    int64
	}{
		{"free now binds", planInput{ram: 6 * gib, free: map[int]int64{ramDevice: 2 * mib}}, []candidate{a}, 2 * mib},
		{"the plan binds", planInput{ram: 8 * gib, free: map[int]int64{ramDevice: 4 * gib}}, []candidate{a}, 2 * gib},
		{"fits without victims", planInput{ram: 1 * gib, free: map[int]int64{ramDevice: 4 * gib}}, nil, 3 * gib},
		{"a GPU model: little RAM comes back", planInput{ram: 2 * gib, vram: 20 * gib,
			free: map[int]int64{ramDevice: 4 * gib, 0: 1 * gib}}, []candidate{gpuA}, 3 * gib},
		{"no memory probe", planInput{free: map[int]int64{ramDevice: 0}}, nil, 0},
		{"over-committed", planInput{ram: 6 * gib, free: map[int]int64{ramDevice: -1 * gib}}, []candidate{a}, 0},
	} {
		if got := prefetchBudget(c.in, c.victims); got != c.want {
			t.Errorf("%s: budget %d, want %d", c.name, got, c.want)
		}
	}
}
