package swapper

import (
	"math"
	"slices"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/state"
)

// snapshot is memory as last measured: the devices, with what the probe
// said was free. Backends' own use is on their instances, measured in the
// same refresh (before the devices, so that a backend growing in between
// is counted twice rather than not at all).
type snapshot struct {
	devs []probe.Device
	// ramOnly says there is no GPU to plan: every VRAM need counts as RAM
	// (a machine without GPUs, or whose GPUs the probe cannot read). Where
	// there are GPUs, each device's Unified flag says whether its memory
	// is RAM.
	ramOnly bool
	at      time.Time
	look    uint64 // the look it came from (see refresh)
}

// newSnapshot is a look's devices as planning sees them. A probe that
// says all GPU memory is RAM (macOS) makes every GPU it reports unified.
func newSnapshot(devs []probe.Device, allUnified bool) snapshot {
	devs = slices.Clone(devs)
	gpus := 0
	for i := range devs {
		if devs[i].Index != ramDevice {
			gpus++
			devs[i].Unified = devs[i].Unified || allUnified
		}
	}
	return snapshot{devs: devs, ramOnly: gpus == 0}
}

// unifiedGPU says GPU gpu's memory is system RAM (an APU, Apple
// Silicon): what a model takes there it takes from RAM too.
func (sn *snapshot) unifiedGPU(gpu int) bool {
	if gpu == ramDevice {
		return false
	}
	for _, d := range sn.devs {
		if d.Index == gpu {
			return d.Unified
		}
	}
	return false
}

// need is what b is planned to take: its declared memory raised to the
// largest footprint measured for it. A model that declares nothing and
// has nothing learned yet is planned as its model file's estimate (see
// estimate.go), if there is one.
func (s *Swapper) need(b *backend) config.Need {
	fp := s.opts.Footprints.Footprint(state.Key(b.model))
	if b.model.Memory == (config.Need{}) && fp.RAM == 0 && fp.VRAM == 0 {
		if e, ok := s.est.get(b.model); ok {
			return e
		}
	}
	return config.Need{RAM: max(b.model.Memory.RAM, fp.RAM), VRAM: max(b.model.Memory.VRAM, fp.VRAM)}
}

// planInputLocked gathers what choosePlan needs to place b, from the
// snapshot and the backends' state: no I/O. Memory is counted so that
// every decision committed already keeps what it was given:
//
//   - free is what the probe saw, less the reserves, less, for each
//     backend whose process runs, what it is planned to need but was not
//     yet using when the probe looked (a loading backend, a memory-mapped
//     model still growing; see refresh), and less, for each start decided but not spawned,
//     what it needs beyond what its victims hold (they are still running
//     and counted as used; their memory is the start's);
//   - with a RAM limit, free RAM is at most the limit less what the
//     backends use or are planned to need, whichever is more;
//   - a GPU has at most its total less what our backends use or are
//     planned to need on it, whichever is more (drivers report frees late);
//   - a unified GPU's memory is RAM: a model on it counts its VRAM on the
//     GPU (its budget: the part of RAM the GPU may use) and in RAM both,
//     and so does a candidate's, for what stopping it frees.
//
// The candidates are the ready models that may be stopped (not pinned, not
// leaving, not b); busy ones by p. transit is the memory held by loads,
// stops and starts in progress: once they settle, it is free or held by a
// model that may be stopped, so a model that fits only with it waits
// rather than being refused.
//
// With b nil, it is what any new start would see (for reports).
func (s *Swapper) planInputLocked(b *backend, p Policy) (planInput, map[int]int64) {
	in := planInput{pin: ramDevice, free: map[int]int64{}}
	if b != nil {
		need := s.need(b)
		in.model, in.ram, in.vram, in.pin = b.model.ID, need.RAM, need.VRAM, b.model.GPU
	}
	ramOnly := s.snap.ramOnly
	if ramOnly {
		in.ram += in.vram
		in.vram = 0
		in.pin = ramDevice
	}
	if b != nil && b.cur != nil && (b.state == Asleep || b.state == Starting && b.start != nil && b.start.wake) {
		// A wake: the model stays where it is, and needs only what it
		// does not hold asleep already (as measured; unmeasured, it is
		// planned as needing all of it).
		ram, vram := s.snap.held(b.cur)
		in.ram, in.vram = max(0, in.ram-ram), max(0, in.vram-vram)
		if b.cur.gpu != ramDevice && !ramOnly {
			in.pin = b.cur.gpu
		}
	}
	if s.opts.Memory == nil {
		// Memory planning is off: everything fits.
		in.ram, in.vram = 0, 0
		in.free[ramDevice] = 0
		return in, nil
	}

	in.cost = s.opts.Eviction == config.EvictCost
	now := s.clock.Now()
	order := map[string]int{}
	for i, id := range s.lru.Keys() {
		order[id] = i
	}
	var (
		held     = map[int]int64{} // what our backends take of each GPU: measured or planned, whichever is more
		limitUse int64
		reserved = map[int]int64{}
		transit  = map[int]int64{}
	)
	// uses is what an instance counts for on each device: measured, or
	// planned, whichever is more.
	uses := func(inst *instance) (ram, vram int64) {
		mram, mvram, nram, nvram := s.snap.counts(inst)
		reserved[ramDevice] += max(0, nram-mram)
		if inst.gpu != ramDevice && !ramOnly {
			reserved[inst.gpu] += max(0, nvram-mvram)
		}
		return max(mram, nram), max(mvram, nvram)
	}
	for _, o := range s.backends {
		if o == b {
			continue
		}
		if inst := o.cur; inst != nil {
			ram, vram := uses(inst)
			limitUse += ram
			if inst.gpu != ramDevice {
				held[inst.gpu] += vram
			}
			switch {
			case o.state == Ready && !o.pinned:
				busy := inst.inflight > 0 || (p.Busy != nil && p.Busy(o.model.ID))
				c := candidate{model: o.model.ID, ram: ram, vram: vram, gpu: inst.gpu,
					busy: busy, used: order[o.model.ID], took: o.startTook, freq: o.freqNow(now)}
				if o.sleep != nil && !inst.noSleep {
					c.sleeps, c.wake = true, o.wakeTook
					c.keepRAM, c.keepVRAM = s.snap.place(s.asleepNeed(o), inst.gpu)
				}
				in.loaded = append(in.loaded, c)
			case o.state == Asleep && !o.pinned:
				// Stopping it frees what it holds asleep; it would take
				// a start to bring back.
				in.loaded = append(in.loaded, candidate{model: o.model.ID, ram: ram, vram: vram, gpu: inst.gpu,
					busy: p.Busy != nil && p.Busy(o.model.ID), used: order[o.model.ID], took: o.startTook,
					freq: o.freqNow(now), asleep: true})
			case o.state == Starting || o.state == Draining || o.state == Stopping || o.state == Sleeping:
				// A load becomes a candidate once ready; a leaving model's
				// memory is free once it has gone, one going to sleep's
				// once it sleeps, less what it keeps.
				if inst.asleep != nil {
					kram, kvram := s.snap.place(inst.keep, inst.gpu)
					ram, vram = max(0, ram-kram), max(0, vram-kvram)
				}
				transit[ramDevice] += ram
				if inst.gpu != ramDevice {
					transit[inst.gpu] += vram
				}
			}
		}
		if o.state == Starting && o.start != nil && (o.cur == nil || o.start.wake && !o.start.waking) {
			// Decided, not spawned (or a wake not yet begun): what it
			// needs beyond what its victims hold (and, for a wake, what it
			// holds asleep). It is a candidate, like any model, once it is
			// ready.
			for d, n := range s.claimLocked(o.start) {
				reserved[d] += n
				transit[d] += n
				if d == ramDevice {
					limitUse += n
				} else {
					held[d] += n
				}
			}
		}
	}
	for _, f := range s.unseen {
		transit[ramDevice] += f.ram
		if f.gpu != ramDevice && !ramOnly {
			transit[f.gpu] += f.vram
		}
	}
	for _, d := range s.snap.devs {
		switch {
		case d.Index == ramDevice:
			in.free[ramDevice] = d.Free - s.opts.ReserveRAM - reserved[ramDevice]
		case !ramOnly:
			// The driver's figure less what it cannot have seen yet, or
			// the total less all we hold, whichever is less.
			free := min(d.Free-reserved[d.Index], d.Total-held[d.Index])
			in.free[d.Index] = free - s.opts.ReserveVRAM
			if d.Unified {
				if in.unified == nil {
					in.unified = map[int]bool{}
				}
				in.unified[d.Index] = true
			}
		}
	}
	if s.opts.LimitRAM > 0 {
		in.free[ramDevice] = min(in.free[ramDevice], s.opts.LimitRAM-limitUse)
	}
	return in, transit
}

// counts is what inst is measured to use (zero until measured) and
// planned to need, in RAM and on its GPU. Placed in RAM, or with no GPU to
// plan, its VRAM counts as RAM alone; on a unified GPU it counts on the
// GPU and in RAM both (it is RAM).
func (sn *snapshot) counts(inst *instance) (mram, mvram, nram, nvram int64) {
	if inst.measured {
		mram, mvram = inst.usage.RAM, inst.usage.VRAM[inst.gpu]
		if sn.ramOnly || inst.gpu == ramDevice {
			mram, mvram = mram+inst.usage.TotalVRAM(), 0
		} else if sn.unifiedGPU(inst.gpu) {
			mram += mvram
		}
	}
	nram, nvram = sn.place(inst.need, inst.gpu)
	return mram, mvram, nram, nvram
}

// place is where n counts for a backend on gpu: in RAM alone where it
// was placed in RAM or there is no GPU to plan; on the GPU and in RAM
// both where the GPU's memory is RAM (see counts).
func (sn *snapshot) place(n config.Need, gpu int) (ram, vram int64) {
	switch {
	case sn.ramOnly || gpu == ramDevice:
		return n.RAM + n.VRAM, 0
	case sn.unifiedGPU(gpu):
		return n.RAM + n.VRAM, n.VRAM
	}
	return n.RAM, n.VRAM
}

// held is what inst is measured to hold, as counts places it; zero
// until measured.
func (sn *snapshot) held(inst *instance) (ram, vram int64) {
	ram, vram, _, _ = sn.counts(inst)
	return ram, vram
}

// claimLocked is what a start decided but not spawned takes from the
// memory free now: its need, less what its victims still hold (their
// memory is its own once they have gone).
func (s *Swapper) claimLocked(dec *decision) map[int]int64 {
	needRAM, needVRAM := dec.need.RAM, dec.need.VRAM
	gpu := dec.gpu
	switch {
	case s.snap.ramOnly || gpu == ramDevice:
		needRAM += needVRAM
		needVRAM, gpu = 0, ramDevice
	case s.snap.unifiedGPU(gpu):
		needRAM += needVRAM
	}
	var heldRAM, heldVRAM int64
	hold := func(inst *instance, keep config.Need) {
		mram, mvram, nram, nvram := s.snap.counts(inst)
		kram, kvram := s.snap.place(keep, inst.gpu)
		heldRAM += max(mram, nram) - kram
		if inst.gpu == gpu && gpu != ramDevice {
			heldVRAM += max(mvram, nvram) - kvram
		}
	}
	for _, v := range dec.victims {
		switch {
		case isClosed(v.inst.gone), v.asleep != nil && isClosed(v.asleep):
			// Gone, or asleep: what it freed is free now.
		case v.asleep != nil:
			hold(v.inst, v.inst.keep) // it keeps some
		default:
			hold(v.inst, config.Need{})
		}
	}
	if dec.wake && dec.self != nil {
		hold(dec.self, config.Need{}) // a wake: what it holds asleep is its own
	}
	c := map[int]int64{ramDevice: max(0, needRAM-heldRAM)}
	if gpu != ramDevice {
		c[gpu] = max(0, needVRAM-heldVRAM)
	}
	return c
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// freqHalfLife is how long a request counts fully toward how often its
// model is asked for, under the cost policy: after it, half as much.
const freqHalfLife = 30 * time.Minute

// bumpFreq counts a request served at now. It is O(1): the count decays
// only when it is read or bumped.
func (b *backend) bumpFreq(now time.Time) {
	b.freq = b.freqNow(now) + 1
	b.freqSet = now
}

// freqNow is the decayed request count as of now.
func (b *backend) freqNow(now time.Time) float64 {
	if b.freq == 0 {
		return 0
	}
	age := now.Sub(b.freqSet)
	if age <= 0 {
		return b.freq
	}
	return b.freq * math.Exp2(-age.Seconds()/freqHalfLife.Seconds())
}
