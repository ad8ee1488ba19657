package swapper

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// slept lists a plan's victims, each marked with how it leaves: "~" put
// to sleep, "-" stopped.
func slept(cs []candidate) string {
	var out []string
	for _, c := range cs {
		mark := "-"
		if c.sleep {
			mark = "~"
		}
		out = append(out, mark+c.model)
	}
	return strings.Join(out, ",")
}

// TestChoosePlanSleep: a model that can sleep is put to sleep rather than
// stopped where sleeping frees enough (GPU short, RAM to spare for what
// it keeps), and stopped where it does not; asleep models are stopped for
// what they hold; the plan with sleeps gives way to one that drains fewer
// busy models, and, under the cost policy, to a cheaper one.
func TestChoosePlanSleep(t *testing.T) {
	// vLLM-like: 10GiB of VRAM on gpu0 and 2GiB of RAM awake; asleep it
	// keeps 8GiB of RAM (its weights) and 1GiB of VRAM.
	vllm := func(name string, used int) candidate {
		return candidate{model: name, ram: 2 * gib, vram: 10 * gib, gpu: 0, used: used,
			sleeps: true, keepRAM: 8 * gib, keepVRAM: 1 * gib, took: 40 * time.Second, wake: time.Second}
	}
	plain := func(name string, ram, vram int64, used int) candidate {
		return candidate{model: name, ram: ram, vram: vram, gpu: 0, used: used, took: 5 * time.Second}
	}
	gpu := func(free0 int64, ram int64) map[int]int64 { return map[int]int64{ramDevice: ram, 0: free0} }
	cases := []struct {
		name    string
		in      planInput
		victims string
		short   string
	}{
		{"GPU short, RAM to spare: put to sleep",
			planInput{model: "x", ram: 1 * gib, vram: 8 * gib, pin: ramDevice, free: gpu(2*gib, 20*gib),
				loaded: []candidate{vllm("v", 0)}},
			"~v", ""},
		{"GPU short, no RAM for what it keeps: stopped",
			planInput{model: "x", ram: 1 * gib, vram: 8 * gib, pin: ramDevice, free: gpu(2*gib, 4*gib),
				loaded: []candidate{vllm("v", 0)}},
			"-v", ""},
		{"sleeping frees too little VRAM: stopped",
			planInput{model: "x", ram: 1 * gib, vram: 11 * gib, pin: ramDevice, free: gpu(1*gib, 20*gib),
				loaded: []candidate{vllm("v", 0)}},
			"-v", ""},
		{"an asleep model is stopped for the RAM it holds",
			planInput{model: "x", ram: 6 * gib, pin: ramDevice, free: gpu(20*gib, 2*gib),
				loaded: []candidate{{model: "z", ram: 8 * gib, vram: 1 * gib, gpu: 0, asleep: true, took: 40 * time.Second}}},
			"-z", ""},
		{"the sleeper rather than the plain model, least recently used first",
			planInput{model: "x", ram: 1 * gib, vram: 8 * gib, pin: ramDevice, free: gpu(1*gib, 20*gib),
				loaded: []candidate{vllm("v", 0), plain("p", 1*gib, 9*gib, 1)}},
			"~v", ""},
		{"a sleep that drains a busy model gives way to stopping an idle one",
			planInput{model: "x", ram: 1 * gib, vram: 8 * gib, pin: ramDevice, free: gpu(1*gib, 20*gib),
				loaded: []candidate{func() candidate { c := vllm("v", 0); c.busy = true; return c }(), plain("p", 1*gib, 9*gib, 1)}},
			"-p", ""},
		{"refused when even stopping everything is not enough",
			planInput{model: "x", ram: 1 * gib, vram: 30 * gib, pin: ramDevice, free: gpu(1*gib, 20*gib),
				loaded: []candidate{vllm("v", 0)}},
			"", "gpu0"},
	}
	for _, c := range cases {
		for _, cost := range []bool{false, true} {
			c.in.cost = cost
			p, err := choosePlan(c.in)
			var ie *InsufficientMemoryError
			switch {
			case c.short != "":
				if !errors.As(err, &ie) || ie.Device != c.short {
					t.Errorf("%s (cost %v): got %v, %v; want refused on %s", c.name, cost, slept(p.victims), err, c.short)
				}
			case err != nil:
				t.Errorf("%s (cost %v): %v", c.name, cost, err)
			case slept(p.victims) != c.victims:
				t.Errorf("%s (cost %v): victims %s, want %s", c.name, cost, slept(p.victims), c.victims)
			}
		}
	}
}

// TestChoosePlanSleepCost: under the cost policy, a plan whose sleeps
// cost more to bring back than the stops of another (a slow wake, a model
// asked for often) gives way to it; under LRU the sleep wins.
func TestChoosePlanSleepCost(t *testing.T) {
	in := planInput{model: "x", ram: 1 * gib, vram: 8 * gib, pin: ramDevice,
		free: map[int]int64{ramDevice: 20 * gib, 0: 1 * gib},
		loaded: []candidate{
			// Wakes in 30 s and is asked for a lot; the other starts in 2 s.
			{model: "v", ram: 2 * gib, vram: 10 * gib, gpu: 0, used: 0, sleeps: true, keepRAM: 8 * gib, keepVRAM: 1 * gib,
				took: 60 * time.Second, wake: 30 * time.Second, freq: 10},
			{model: "p", ram: 1 * gib, vram: 9 * gib, gpu: 0, used: 1, took: 2 * time.Second},
		}}
	p, err := choosePlan(in)
	if err != nil || slept(p.victims) != "~v" {
		t.Errorf("LRU: %s, %v; want ~v", slept(p.victims), err)
	}
	in.cost = true
	p, err = choosePlan(in)
	if err != nil || slept(p.victims) != "-p" {
		t.Errorf("cost: %s, %v; want -p (2 s to bring back against 11 × 30 s)", slept(p.victims), err)
	}
	// An unknown wake is taken as a tenth of the start: 11 × 6 s > 2 s.
	in.loaded[0].wake = 0
	if p, _ = choosePlan(in); slept(p.victims) != "-p" {
		t.Errorf("cost, wake unknown: %s; want -p", slept(p.victims))
	}
	in.loaded[0].freq = 0 // 1 × 6 s > 2 s still
	in.loaded[1].took = 20 * time.Second
	if p, _ = choosePlan(in); slept(p.victims) != "~v" {
		t.Errorf("cost, p slow to start: %s; want ~v (6 s against 20 s)", slept(p.victims))
	}
}
