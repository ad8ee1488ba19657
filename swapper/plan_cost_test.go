package swapper

import (
	"context"
	"math/rand"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/probe"
)

// TestChoosePlanEviction compares the policies: small is quick to bring
// back, large slow; memory is short for a third model.
func TestChoosePlanEviction(t *testing.T) {
	const sec = time.Second
	small := candidate{model: "small", ram: 2 * gib, took: 2 * sec}
	large := candidate{model: "large", ram: 20 * gib, took: 60 * sec}
	with := func(c candidate, f func(*candidate)) candidate { f(&c); return c }
	usedAt := func(n int) func(*candidate) { return func(c *candidate) { c.used = n } }
	// small is the more recently used.
	pair := []candidate{with(large, usedAt(0)), with(small, usedAt(1))}
	short := func(ram int64, cost bool, loaded ...candidate) planInput {
		return planInput{ram: ram, pin: ramDevice, free: map[int]int64{ramDevice: 0}, loaded: loaded, cost: cost}
	}
	cases := []struct {
		name    string
		in      planInput
		victims string
	}{
		{"lru: the least recently used", short(2*gib, false, pair...), "large"},
		{"cost: the cheap one though more recent", short(2*gib, true, pair...), "small"},
		{"cost: the slow one when the cheap one is asked for much more often", short(2*gib, true,
			with(large, func(c *candidate) { c.freq = 1 }), with(small, func(c *candidate) { c.used, c.freq = 1, 100 })), "large"},
		{"cost: a little more often is not enough", short(2*gib, true,
			with(large, func(c *candidate) { c.freq = 1 }), with(small, func(c *candidate) { c.used, c.freq = 1, 5 })), "small"},
		{"lru: never a busy one before an idle one", short(2*gib, false,
			with(large, func(c *candidate) { c.busy = true }), with(small, usedAt(1))), "small"},
		{"cost: never a busy one before an idle one", short(2*gib, true,
			with(small, func(c *candidate) { c.busy = true }), with(large, usedAt(1))), "large"},
		{"cost: busy ones only when idle ones are not enough", short(21*gib, true,
			with(small, func(c *candidate) { c.busy = true }), with(large, usedAt(1))), "small,large"},
		{"cost: two cheap ones rather than one slow one", short(4*gib, true,
			with(large, usedAt(0)), with(small, func(c *candidate) { c.model, c.used = "s1", 1 }),
			with(small, func(c *candidate) { c.model, c.used = "s2", 2 })), "s1,s2"},
		{"lru: one rather than two", short(4*gib, false,
			with(large, usedAt(2)), with(small, func(c *candidate) { c.model, c.used = "s1", 0 }),
			with(small, func(c *candidate) { c.model, c.used = "s2", 1 })), "large"},
		{"cost: ties go by last use", short(2*gib, true,
			with(small, func(c *candidate) { c.model, c.used = "newer", 1 }),
			with(small, func(c *candidate) { c.model, c.used = "older", 0 })), "older"},
		// Start times vary by a few percent from one start to the next:
		// within 10%, costs are a tie, and last use decides.
		{"cost: within 10% is a tie", short(2*gib, true,
			with(small, func(c *candidate) { c.model, c.used, c.took = "newer-quicker", 1, 1900*time.Millisecond }),
			with(small, func(c *candidate) { c.model, c.used = "older", 0 })), "older"},
		{"cost: beyond 10% is not", short(2*gib, true,
			with(small, func(c *candidate) { c.model, c.used, c.took = "newer-quicker", 1, 1700*time.Millisecond }),
			with(small, func(c *candidate) { c.model, c.used = "older", 0 })), "newer-quicker"},
		// Unknown start times: the median rate of the known ones (here
		// large's, 3s/GiB) times its size: unknown-small is 6s, cheaper.
		{"cost: an unknown start time is estimated from the known rate", short(2*gib, true,
			with(large, usedAt(0)), with(small, func(c *candidate) { c.model, c.took, c.used = "unknown-small", 0, 1 })), "unknown-small"},
		// ... which makes an unknown large one dear.
		{"cost: an unknown large one is dear", short(2*gib, true,
			with(large, func(c *candidate) { c.model, c.took = "unknown-large", 0 }),
			with(small, func(c *candidate) { c.took, c.used = 10*sec, 1 })), "small"},
		{"cost: none known goes by size and frequency", short(2*gib, true,
			with(large, func(c *candidate) { c.took = 0 }), with(small, func(c *candidate) { c.took, c.used = 0, 1 })), "small"},
		{"cost: none known, the small one asked for far more often", short(2*gib, true,
			with(large, func(c *candidate) { c.took = 0 }), with(small, func(c *candidate) { c.took, c.used, c.freq = 0, 1, 30 })), "large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := choosePlan(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(p.victims); got != tc.victims {
				t.Errorf("victims %q, want %q", got, tc.victims)
			}
		})
	}
}

// TestChoosePlanCostGPU: under cost the GPU whose victims are cheaper to
// bring back wins, though each needs one eviction.
func TestChoosePlanCostGPU(t *testing.T) {
	in := planInput{vram: 6 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 10 * gib, 0: 1 * gib, 1: 1 * gib},
		loaded: []candidate{
			{model: "slow0", vram: 8 * gib, gpu: 0, took: time.Minute, used: 0},
			{model: "quick1", vram: 8 * gib, gpu: 1, took: time.Second, used: 1},
		}}
	for _, tc := range []struct {
		cost bool
		want string
		gpu  int
	}{{false, "slow0", 0}, {true, "quick1", 1}} {
		in.cost = tc.cost
		// The GPUs are a map: ask often, so that its order cannot decide.
		for range 20 {
			p, err := choosePlan(in)
			if err != nil || names(p.victims) != tc.want || p.gpu != tc.gpu {
				t.Fatalf("cost=%v: %+v, %v; want %s on gpu%d", tc.cost, p, err, tc.want, tc.gpu)
			}
		}
	}
}

// TestChoosePlanCostManyCandidates: past maxSearch, greedy takes the
// cheapest per byte freed, and idle before busy.
func TestChoosePlanCostManyCandidates(t *testing.T) {
	var loaded []candidate
	for i := range maxSearch + 4 {
		loaded = append(loaded, candidate{model: string(rune('a' + i)), ram: gib, took: time.Duration(10+i) * time.Second, used: maxSearch + 4 - i})
	}
	loaded[5].took = time.Second // f: cheapest, but busy
	loaded[5].busy = true
	loaded[9].took = 2 * time.Second // j: cheapest idle
	in := planInput{ram: 2 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 0}, loaded: loaded, cost: true}
	p, err := choosePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(p.victims); got != "j,a" {
		t.Errorf("victims %q, want j,a", got)
	}
	in.cost = false
	if p, _ := choosePlan(in); names(p.victims) != "t,s" {
		t.Errorf("lru: victims %q, want t,s (least recently used)", names(p.victims))
	}
}

// TestChoosePlanCostDeterministic: the candidates' order does not matter.
func TestChoosePlanCostDeterministic(t *testing.T) {
	loaded := []candidate{
		{model: "a", ram: 2 * gib, took: 5 * time.Second, freq: 3, used: 0},
		{model: "b", ram: 3 * gib, took: 5 * time.Second, freq: 3, used: 1},
		{model: "c", ram: 2 * gib, took: 0, freq: 1, used: 2},
		{model: "d", ram: 4 * gib, took: 9 * time.Second, used: 3},
		{model: "e", ram: 2 * gib, took: 5 * time.Second, freq: 3, used: 4},
	}
	in := planInput{ram: 4 * gib, pin: ramDevice, free: map[int]int64{ramDevice: 0}, cost: true}
	var want string
	rng := rand.New(rand.NewSource(1))
	for i := range 50 {
		in.loaded = append([]candidate(nil), loaded...)
		rng.Shuffle(len(in.loaded), func(i, j int) { in.loaded[i], in.loaded[j] = in.loaded[j], in.loaded[i] })
		p, err := choosePlan(in)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, v := range p.victims {
			got[v.model] = true
		}
		s := ""
		for _, m := range []string{"a", "b", "c", "d", "e"} {
			if got[m] {
				s += m
			}
		}
		if i == 0 {
			want = s
		} else if s != want {
			t.Fatalf("run %d: %s, first run %s", i, s, want)
		}
	}
}

func TestRequestFrequencyDecays(t *testing.T) {
	var b backend
	t0 := time.Unix(1000, 0)
	if b.freqNow(t0) != 0 {
		t.Fatal("a model never asked for has frequency 0")
	}
	b.bumpFreq(t0)
	b.bumpFreq(t0)
	if got := b.freqNow(t0); got != 2 {
		t.Errorf("two requests: %v", got)
	}
	if got := b.freqNow(t0.Add(freqHalfLife)); got < 0.999 || got > 1.001 {
		t.Errorf("a half-life later: %v, want 1", got)
	}
	b.bumpFreq(t0.Add(2 * freqHalfLife))
	if got := b.freqNow(t0.Add(2 * freqHalfLife)); got < 1.499 || got > 1.501 {
		t.Errorf("two half-lives later and one more: %v, want 1.5", got)
	}
}

// TestEvictionPolicyFromConfig: scheduling.eviction, read from the file,
// reaches the planner's input at New and at Reconfigure.
func TestEvictionPolicyFromConfig(t *testing.T) {
	const models = "models:\n  m: {cmd: \"x ${PORT}\", memory: {ram: 1GiB}}\n"
	for _, tc := range []struct {
		text string
		cost bool
	}{
		{models, true}, // the default: cost
		{"scheduling: {eviction: lru}\n" + models, false},
		{"scheduling: {eviction: cost}\n" + models, true},
	} {
		cfg, err := config.Parse([]byte(tc.text))
		if err != nil {
			t.Fatal(err)
		}
		s := New(Options{Models: cfg.Models, Ports: cfg.Ports, Memory: probe.NewFake("x", 8*gib), Eviction: cfg.Scheduling.Eviction})
		cost := func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			in, _ := s.planInputLocked(nil, Policy{})
			return in.cost
		}
		if got := cost(); got != tc.cost {
			t.Errorf("%q: cost %v, want %v", cfg.Scheduling.Eviction, got, tc.cost)
		}
		flip := config.EvictCost
		if tc.cost {
			flip = config.EvictLRU
		}
		s.Reconfigure(cfg.Models, Settings{Eviction: flip})
		if got := cost(); got == tc.cost {
			t.Errorf("%q, reloaded as %q: cost %v", cfg.Scheduling.Eviction, flip, got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Close(ctx)
		cancel()
	}
}
