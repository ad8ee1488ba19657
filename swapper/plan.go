package swapper

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hotswap/hotswap/config"
)

// ramDevice is the index of system RAM in plans; GPUs use their own index.
const ramDevice = -1

// candidate is a loaded model that could be stopped to make room.
type candidate struct {
	model string
	ram   int64 // what stopping it frees in RAM
	vram  int64 // and on its GPU
	gpu   int   // where its VRAM is, or ramDevice
	busy  bool  // it has work: stopping it means draining it first
	// used ranks it by last use among the candidates: 0 is the least
	// recently used.
	used int
	// took is how long its last start took, 0 if unknown; freq how often
	// it is asked for (requests, decayed: see backend.freq). The cost
	// policy weighs them; LRU does not look.
	took time.Duration
	freq float64
	// sleeps says it can be put to sleep rather than stopped, keeping
	// keepRAM and keepVRAM (on gpu); wake is how long its last wake took
	// (0 if unknown). asleep says it sleeps already: stopping it frees
	// what it holds (ram, vram).
	sleeps            bool
	keepRAM, keepVRAM int64
	wake              time.Duration
	asleep            bool
	// sleep, in a plan's victims, says it is to be put to sleep: ram and
	// vram are then what sleeping frees (less than it holds; ram can be
	// negative, where sleeping moves GPU memory to RAM).
	sleep bool
}

// planInput is everything a placement decision depends on. It is a plain
// value so that choosing victims is a pure function, tested with tables.
type planInput struct {
	model string
	ram   int64 // what the model needs
	vram  int64
	// pin is the GPU the model must use, or ramDevice for any.
	pin int
	// free is the memory available per device now: what the probe last
	// saw, less the reserves, less what starts in progress have yet to
	// take. GPUs absent from it do not exist.
	free map[int]int64
	// loaded are the models that may be stopped. Pinned models, models
	// already leaving or loading, and the model itself are not in it.
	loaded []candidate
	// unified are the GPUs whose memory is system RAM (an APU's, Apple
	// Silicon's): a model placed on one takes its VRAM from the GPU's
	// budget (free[gpu]) and from RAM. A candidate's ram already counts
	// the VRAM it holds on such a GPU: stopping it frees both.
	unified map[int]bool
	// cost chooses victims by what they cost to bring back
	// (config.EvictCost) rather than by last use.
	cost bool
}

// plan is the decision: the GPU to use (ramDevice when the model needs no
// VRAM) and the models to stop first.
type plan struct {
	gpu     int
	victims []candidate
	left    int64 // memory the device keeps afterwards
	unified bool  // gpu's memory is RAM
	// cost is what the victims are expected to cost to bring back, under
	// the cost policy (see reload); 0 under LRU.
	cost float64
}

// maxSearch bounds the candidates whose every combination is tried; past
// it (a machine with more loaded models than that is rare) victims are
// chosen greedily.
const maxSearch = 16

// choosePlan places a model, stopping no more than it must, and putting
// models to sleep rather than stopping them where that frees enough.
//
// It plans twice: once with every candidate that can sleep put to sleep
// rather than stopped (freeing what it holds less what it keeps asleep),
// and once with every victim stopped. The plan with sleeps wins unless it
// drains more busy models than the other, or, under the cost policy,
// costs more to bring back (a wake costs its learned wake time where a
// stop costs a start). Where only stopping frees enough, victims stop.
func choosePlan(in planInput) (plan, error) {
	stopped, err := placePlan(in)
	if !canSleep(in.loaded) {
		return stopped, err
	}
	slept, serr := placePlan(sleeping(in))
	switch {
	case serr != nil:
		return stopped, err
	case err != nil:
		return slept, nil
	case busyCount(slept.victims) != busyCount(stopped.victims):
		if busyCount(slept.victims) < busyCount(stopped.victims) {
			return slept, nil
		}
		return stopped, nil
	case in.cost && cheaper(stopped.cost, slept.cost):
		return stopped, nil
	}
	return slept, nil
}

func canSleep(cs []candidate) bool {
	return slices.ContainsFunc(cs, func(c candidate) bool { return c.sleeps })
}

// sleeping is in with every candidate that can sleep to be put to sleep:
// it frees what it holds less what it keeps, and costs its wake to bring
// back (see reloads).
func sleeping(in planInput) planInput {
	loaded := slices.Clone(in.loaded)
	for i, c := range loaded {
		if c.sleeps {
			c.ram -= c.keepRAM
			c.vram -= c.keepVRAM
			c.sleep = true
			loaded[i] = c
		}
	}
	in.loaded = loaded
	return in
}

// placePlan places a model, stopping no more than it must. Of the sets of
// candidates that free enough memory where the model is short, it prefers,
// in order:
//
//  1. fewer busy models (idle ones cost nobody a wait);
//  2. fewer models;
//  3. the least recently used (the set whose most recently used member was
//     used longest ago, then the next, ...);
//  4. the least memory freed beyond the need.
//
// Under the cost policy (in.cost), 2 and 3 give way to the least expected
// cost of bringing the set back (see reload), then come 2, 3 and 4 for
// ties. Busy models are still stopped only when idle ones are not enough.
//
// Of the GPUs where the model could go, the one whose best set is best by
// the first two (under cost: fewest busy, then least cost) wins, then a
// discrete GPU rather than a unified one (whose memory is RAM), then the
// one with the most memory left. If nothing fits even after stopping
// every candidate, it returns an *InsufficientMemoryError and nothing is
// to be stopped.
func placePlan(in planInput) (plan, error) {
	gpus := []int{ramDevice}
	if in.vram > 0 {
		gpus = gpus[:0]
		if in.pin != ramDevice {
			gpus = append(gpus, in.pin)
		} else {
			for d := range in.free {
				if d != ramDevice {
					gpus = append(gpus, d)
				}
			}
			sort.Ints(gpus)
		}
	}
	var r *reloads
	if in.cost {
		r = newReloads(in.loaded)
	}
	var best *plan
	var short *InsufficientMemoryError
	for _, gpu := range gpus {
		p, err := planOn(in, gpu, r)
		if err != nil {
			if short == nil {
				short = err
			}
			continue
		}
		if best == nil || betterOnGPU(p, *best, in.cost) {
			best = &p
		}
	}
	if best != nil {
		return *best, nil
	}
	if short == nil { // no GPU at all for a model that needs VRAM
		short = &InsufficientMemoryError{Model: in.model, Device: "gpu", Need: in.vram}
	}
	return plan{}, short
}

func betterOnGPU(a, b plan, cost bool) bool {
	if ab, bb := busyCount(a.victims), busyCount(b.victims); ab != bb {
		return ab < bb
	}
	if cost && (cheaper(a.cost, b.cost) || cheaper(b.cost, a.cost)) {
		return cheaper(a.cost, b.cost)
	}
	if len(a.victims) != len(b.victims) {
		return len(a.victims) < len(b.victims)
	}
	if a.unified != b.unified {
		// A discrete GPU's memory serves GPU models alone; a unified
		// one's is RAM, which every model needs.
		return !a.unified
	}
	return a.left > b.left
}

func busyCount(cs []candidate) int {
	n := 0
	for _, c := range cs {
		if c.busy {
			n++
		}
	}
	return n
}

// planOn chooses victims for placing the model's VRAM on gpu (or the
// model in RAM, for gpu == ramDevice). On a unified GPU the model's VRAM
// is needed in RAM too.
func planOn(in planInput, gpu int, r *reloads) (plan, *InsufficientMemoryError) {
	freeRAM := in.free[ramDevice]
	freeGPU, ok := in.free[gpu]
	if gpu != ramDevice && !ok {
		return plan{}, &InsufficientMemoryError{Model: in.model, Device: deviceName(gpu), Need: in.vram}
	}
	needRAM := in.ram
	if gpu != ramDevice && in.unified[gpu] {
		needRAM += in.vram
	}
	// What is short on each device; below zero, what is left to spare
	// (a victim put to sleep can take RAM: see sleeping).
	shortRAM := needRAM - freeRAM
	shortGPU := int64(0)
	if gpu != ramDevice {
		shortGPU = in.vram - freeGPU
	}
	left := func(victims []candidate) int64 {
		ram := freeRAM + sum(victims, ramDevice, gpu) - needRAM
		switch {
		case gpu == ramDevice:
			return ram
		case in.unified[gpu]: // whichever of its budget and RAM runs out first
			return min(ram, freeGPU+sum(victims, gpu, gpu)-in.vram)
		}
		return freeGPU + sum(victims, gpu, gpu) - in.vram
	}
	if shortRAM <= 0 && shortGPU <= 0 {
		return plan{gpu: gpu, left: left(nil), unified: in.unified[gpu]}, nil
	}
	// Only models that free memory where the model is short can help.
	var helps []candidate
	for _, c := range in.loaded {
		if (shortRAM > 0 && c.ram > 0) || (shortGPU > 0 && c.gpu == gpu && c.vram > 0) {
			helps = append(helps, c)
		}
	}
	enough := func(victims []candidate) bool {
		return sum(victims, ramDevice, gpu) >= shortRAM && sum(victims, gpu, gpu) >= shortGPU
	}
	if !enough(helps) {
		if sum(helps, ramDevice, gpu) < shortRAM {
			return plan{}, &InsufficientMemoryError{Model: in.model, Device: "ram", Need: needRAM,
				Free: freeRAM, Freeable: sum(helps, ramDevice, gpu)}
		}
		return plan{}, &InsufficientMemoryError{Model: in.model, Device: deviceName(gpu), Need: in.vram,
			Free: freeGPU, Freeable: sum(helps, gpu, gpu)}
	}
	excess := func(victims []candidate) int64 {
		return sum(victims, ramDevice, gpu) - max(0, shortRAM) + sum(victims, gpu, gpu) - max(0, shortGPU)
	}
	var victims []candidate
	if len(helps) > maxSearch {
		victims = greedy(helps, enough, r, gpu)
	} else {
		victims = smallest(helps, enough, excess, r)
	}
	return plan{gpu: gpu, victims: victims, left: left(victims), unified: in.unified[gpu], cost: r.of(victims)}, nil
}

// sum is what cs free on device d, for a model placed on gpu: RAM for
// ramDevice, else VRAM of the candidates on that GPU.
func sum(cs []candidate, d, gpu int) int64 {
	var n int64
	for _, c := range cs {
		switch {
		case d == ramDevice:
			n += c.ram
		case c.gpu == gpu:
			n += c.vram
		}
	}
	return n
}

// smallest tries every set of cs and returns the best that is enough.
func smallest(cs []candidate, enough func([]candidate) bool, excess func([]candidate) int64, r *reloads) []candidate {
	var best []candidate
	set := make([]candidate, 0, len(cs))
	for mask := 1; mask < 1<<len(cs); mask++ {
		set = set[:0]
		for i, c := range cs {
			if mask&(1<<i) != 0 {
				set = append(set, c)
			}
		}
		if !enough(set) {
			continue
		}
		if best == nil || better(set, best, excess, r) {
			best = slices.Clone(set)
		}
	}
	return best
}

// better orders victim sets as choosePlan says; r is nil under LRU.
func better(a, b []candidate, excess func([]candidate) int64, r *reloads) bool {
	if ab, bb := busyCount(a), busyCount(b); ab != bb {
		return ab < bb
	}
	if r != nil {
		if ca, cb := r.of(a), r.of(b); cheaper(ca, cb) || cheaper(cb, ca) {
			return cheaper(ca, cb)
		}
	}
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	ra, rb := recency(a), recency(b)
	for i := range ra {
		if ra[i] != rb[i] {
			return ra[i] < rb[i]
		}
	}
	return excess(a) < excess(b)
}

// recency lists the sets' use ranks, most recent first.
func recency(cs []candidate) []int {
	r := make([]int, len(cs))
	for i, c := range cs {
		r[i] = c.used
	}
	sort.Sort(sort.Reverse(sort.IntSlice(r)))
	return r
}

// greedy takes idle before busy, least recently used first (under the
// cost policy, cheapest to bring back per byte freed on gpu first, as
// GreedyDual-Size-Frequency does), until enough, then drops any that
// turned out not to be needed.
func greedy(cs []candidate, enough func([]candidate) bool, r *reloads, gpu int) []candidate {
	order := slices.Clone(cs)
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].busy != order[j].busy {
			return !order[i].busy
		}
		if r != nil {
			if di, dj := r.density(order[i], gpu), r.density(order[j], gpu); di != dj {
				return di < dj
			}
		}
		return order[i].used < order[j].used
	})
	var set []candidate
	for _, c := range order {
		if enough(set) {
			break
		}
		set = append(set, c)
	}
	for i := len(set) - 1; i >= 0; i-- {
		without := slices.Delete(slices.Clone(set), i, i+1)
		if enough(without) {
			set = without
		}
	}
	return set
}

// reloads prices candidates for the cost policy. A candidate's cost is
//
//	(1 + freq) × took
//
// the start time it would take again (for a model put to sleep, its wake
// time), weighted by how often it is asked for (1 + its decayed request
// count: a model nobody asked for since it was loaded still costs one
// start if it is). A candidate whose start time
// is unknown is taken to start at the median rate (seconds per byte it
// holds) of those whose start time is known, times its size; if none is
// known, every candidate is taken to start at the same rate, so that cost
// goes by size and frequency alone.
//
// A set's cost is the sum of its members': every set compared frees
// enough, so the one whose reloads would take least, expected, is best.
// This is GreedyDual-Size-Frequency's value (frequency × cost ÷ size)
// for an exact choice among sets: the division by size is what a greedy
// choice needs to weigh memory freed, which here is the constraint every
// set meets; greedy (past maxSearch candidates) orders by it.
type reloads struct {
	cost map[string]float64 // seconds, by model
}

func newReloads(cs []candidate) *reloads {
	var rates []float64
	for _, c := range cs {
		if size := c.ram + c.vram; c.took > 0 && size > 0 && !c.sleep {
			rates = append(rates, c.took.Seconds()/float64(size))
		}
	}
	rate := 1.0 / float64(1<<30) // a second a GiB: any rate will do when all are estimated
	if len(rates) > 0 {
		sort.Float64s(rates)
		rate = rates[len(rates)/2]
		if len(rates)%2 == 0 {
			rate = (rates[len(rates)/2-1] + rates[len(rates)/2]) / 2
		}
	}
	r := &reloads{cost: make(map[string]float64, len(cs))}
	for _, c := range cs {
		took := c.took.Seconds()
		if c.took <= 0 {
			held := c.ram + c.vram
			if c.sleep {
				held += c.keepRAM + c.keepVRAM // what it holds, not what sleeping frees
			}
			took = rate * float64(held)
		}
		if c.sleep {
			// Put to sleep, it comes back in its wake time; until one
			// is learned, a tenth of its start (vLLM wakes in about a
			// second where it starts in tens).
			took /= 10
			if c.wake > 0 {
				took = c.wake.Seconds()
			}
		}
		r.cost[c.model] = (1 + max(0, c.freq)) * took
	}
	return r
}

// costTolerance and costFloor are how much two costs may differ and still
// be taken as equal: a tenth, or a quarter of a second (costs are in
// seconds). Start times are learned from single starts, which vary by
// that much from one to the next (a start of a tenth of a second, by half
// of it), and between two models that cost about the same to bring back
// the least recently used should go, as under LRU.
const (
	costTolerance = 0.10
	costFloor     = 0.25
)

// cheaper reports whether cost a is less than b by more than the
// tolerance.
func cheaper(a, b float64) bool { return a < b && b-a > max(costTolerance*b, costFloor) }

// of is the cost of bringing cs back; 0 for a nil r (LRU).
func (r *reloads) of(cs []candidate) float64 {
	if r == nil {
		return 0
	}
	var n float64
	for _, c := range cs {
		n += r.cost[c.model]
	}
	return n
}

// density is c's cost per byte it frees where a model placed on gpu
// needs room: RAM, and the GPU's memory.
func (r *reloads) density(c candidate, gpu int) float64 {
	freed := c.ram
	if gpu != ramDevice && c.gpu == gpu {
		freed += c.vram
	}
	if freed <= 0 {
		return math.Inf(1)
	}
	return r.cost[c.model] / float64(freed)
}

func deviceName(d int) string {
	if d == ramDevice {
		return "ram"
	}
	return "gpu" + strconv.Itoa(d)
}

// InsufficientMemoryError refuses a model that cannot fit even if every
// model that may be stopped were stopped.
type InsufficientMemoryError struct {
	Model  string
	Device string // "ram", "gpu0", ...
	Need   int64
	Free   int64 // free on the device now, after reserves
	// Freeable is what stopping every model that may be stopped would add.
	Freeable int64
}

func (e *InsufficientMemoryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "model %q needs %s of %s but only %s is free", e.Model, config.FormatSize(e.Need), e.Device, config.FormatSize(e.Free))
	if e.Freeable > 0 {
		fmt.Fprintf(&b, " (%s more if every other unpinned model were stopped)", config.FormatSize(e.Freeable))
	}
	b.WriteString(", so it cannot be started")
	return b.String()
}
