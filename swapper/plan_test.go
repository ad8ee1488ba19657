package swapper

import (
	"errors"
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
		{model: "old", ram: 2 * gib},
		{model: "mid", ram: 3 * gib},
		{model: "new", ram: 4 * gib},
	}
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
		{"evicts two when one is not enough", planInput{ram: 6 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 2 * gib}, loaded: lru},
			ramDevice, "old,mid", ""},
		{"refuses what can never fit", planInput{ram: 12 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 2 * gib}, loaded: lru},
			ramDevice, "", "ram"},
		{"idle before busy", planInput{ram: 3 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 1 * gib}, loaded: []candidate{
			{model: "busy-old", ram: 4 * gib, busy: true}, {model: "idle-new", ram: 4 * gib}}},
			ramDevice, "idle-new", ""},
		{"busy ones when idle ones are not enough", planInput{ram: 6 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 1 * gib}, loaded: []candidate{
			{model: "busy-old", ram: 4 * gib, busy: true}, {model: "idle-new", ram: 4 * gib}}},
			ramDevice, "idle-new,busy-old", ""},
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

func TestInsufficientMemoryMessage(t *testing.T) {
	e := &InsufficientMemoryError{Model: "big", Device: "gpu0", Need: 80 * gib, Free: 3 * gib / 2, Freeable: 20 * gib}
	want := `model "big" needs 80GiB of gpu0 but only 1.5GiB is free (20GiB more if every other unpinned model were stopped), so it cannot be started`
	if e.Error() != want {
		t.Errorf("got  %s\nwant %s", e.Error(), want)
	}
}
