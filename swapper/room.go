package swapper

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/probe"
)

// need is what b is planned to take: its declared memory raised to the
// largest footprint measured for it.
func (s *Swapper) need(b *backend) config.Need {
	fp := s.opts.Footprints.Get(b.model.ID)
	return config.Need{RAM: max(b.model.Memory.RAM, fp.RAM), VRAM: max(b.model.Memory.VRAM, fp.VRAM)}
}

// makeRoom frees memory for b, stopping other models if it must, and
// returns the GPU to place it on (ramDevice when it needs none). It is
// called with the swap semaphore held, so no other start plans at the same
// time; starts already loading are accounted for by their reservations.
func (s *Swapper) makeRoom(b *backend) (int, error) {
	if s.opts.Memory == nil {
		return ramDevice, nil
	}
	in, err := s.planInput(b, true)
	if err != nil {
		return ramDevice, err
	}
	p, err := choosePlan(in)
	if err != nil {
		s.log.Warn("refusing model: not enough memory", zap.String("model", b.model.ID), zap.Error(err))
		return ramDevice, err
	}
	if len(p.victims) == 0 {
		return p.gpu, nil
	}
	for _, v := range p.victims {
		s.log.Info("evicting", zap.String("model", v.model), zap.String("for", b.model.ID),
			zap.Bool("busy", v.busy), zap.String("frees_ram", FormatBytes(v.ram)), zap.String("frees_vram", FormatBytes(v.vram)))
		s.mu.Lock()
		vb := s.backends[v.model]
		s.mu.Unlock()
		s.stop(vb, "making room for "+b.model.ID, nil)
	}
	return p.gpu, s.cooldown(b, p.gpu)
}

// cooldown waits until the probe shows that b fits on gpu without stopping
// anything more: a stopped process's memory (VRAM above all) can take a
// moment to show as free, and a fixed sleep is either too short or wasted.
func (s *Swapper) cooldown(b *backend, gpu int) error {
	begin := time.Now()
	deadline := begin.Add(s.opts.CooldownMax)
	interval := 5 * time.Millisecond
	for {
		in, err := s.planInput(b, false)
		if err != nil {
			return err
		}
		in.pin = gpu
		in.loaded = nil // fits as things are, or not yet
		_, err = choosePlan(in)
		if err == nil {
			s.log.Info("memory is back", zap.String("model", b.model.ID), zap.Duration("cooldown", time.Since(begin)))
			return nil
		}
		if time.Now().After(deadline) {
			s.log.Warn("memory did not come back within cooldown_max", zap.String("model", b.model.ID),
				zap.Duration("cooldown_max", s.opts.CooldownMax), zap.Error(err))
			return err
		}
		select {
		case <-s.ctx.Done():
			return ErrClosed
		case <-time.After(min(interval, time.Until(deadline)+time.Millisecond)):
		}
		interval = min(interval*2, 100*time.Millisecond)
	}
}

// planInput gathers what choosePlan needs for b: free memory per device
// (less the reserves, the reservations of starts in progress and, with a
// RAM limit, what our backends already use) and the models that may be
// stopped, least recently used first.
//
// With measure, every running backend is measured first; the cool-down's
// repeated looks measure only loads in progress and otherwise go by the
// last measurements (kept fresh by each backend's own measuring loop).
func (s *Swapper) planInput(b *backend, measure bool) (planInput, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	mem := s.opts.Memory
	devs, err := mem.Devices(ctx)
	if err != nil {
		return planInput{}, err
	}
	unified := mem.UnifiedMemory() || len(devs) < 2

	// Measure every running instance: its real use decides what stopping
	// it frees, and what a start in progress still has to take.
	type running struct {
		b    *backend
		inst *instance
		busy bool
		// A snapshot, taken under the lock, of what planning reads.
		usage             probe.Usage
		measured          bool
		need              config.Need
		pending, stopping bool
	}
	var all []running
	s.mu.Lock()
	for _, o := range s.backends {
		switch {
		case o.pending != nil && o.state == Starting:
			all = append(all, running{b: o, inst: o.pending, pending: true})
		case o.cur != nil && o != b:
			all = append(all, running{b: o, inst: o.cur, busy: o.cur.inflight > 0 || o.state != Ready})
		}
	}
	s.mu.Unlock()
	for _, r := range all {
		// Loads in progress grow from one look to the next: always measure
		// them, or their reservation would count memory twice.
		if measure || r.pending {
			s.measureInstance(ctx, r.b, r.inst, !r.pending)
		}
	}
	s.mu.Lock()
	for i := range all {
		r := &all[i]
		r.usage, r.measured, r.need = r.inst.usage, r.inst.measured, r.inst.need
		r.stopping = r.b.state == Stopping
	}
	order := s.lru.Keys()
	s.mu.Unlock()

	need := s.need(b)
	in := planInput{model: b.model.ID, ram: need.RAM, vram: need.VRAM, pin: b.model.GPU, free: map[int]int64{}}
	if unified {
		in.ram += in.vram
		in.vram = 0
		in.pin = ramDevice
	}
	// Each running backend counts for the larger of what it was planned to
	// need and what it is measured to use: the difference is reserved for
	// it (a loading backend has not taken its memory yet, and a memory-
	// mapped model grows as its pages are touched).
	ourRAM := int64(0)
	ourVRAM := map[int]int64{}
	reserved := map[int]int64{}
	byModel := map[string]candidate{}
	for _, r := range all {
		u, instNeed := r.usage, r.need
		var ram, vram int64
		if r.measured {
			ram, vram = u.RAM, u.VRAM[r.inst.gpu]
		}
		needRAM, needVRAM := instNeed.RAM, instNeed.VRAM
		if unified || r.inst.gpu == ramDevice {
			ram += sumVRAM(u)
			needRAM += needVRAM
			vram, needVRAM = 0, 0
		}
		reserved[ramDevice] += max(0, needRAM-ram)
		ourRAM += max(ram, needRAM)
		if r.inst.gpu != ramDevice {
			reserved[r.inst.gpu] += max(0, needVRAM-vram)
			ourVRAM[r.inst.gpu] += vram
		}
		if r.pending || r.b.model.Pinned || r.stopping {
			continue
		}
		byModel[r.b.model.ID] = candidate{model: r.b.model.ID, ram: max(ram, needRAM), vram: max(vram, needVRAM),
			gpu: r.inst.gpu, busy: r.busy}
	}
	for _, d := range devs {
		switch {
		case d.Index == ramDevice:
			in.free[ramDevice] = d.Free - s.opts.ReserveRAM - reserved[ramDevice]
		case !unified:
			// Drivers report frees late: a GPU has at most its total less
			// what our own backends are measured to use on it.
			free := min(d.Free, d.Total-ourVRAM[d.Index])
			in.free[d.Index] = free - s.opts.ReserveVRAM - reserved[d.Index]
		}
	}
	if s.opts.LimitRAM > 0 {
		in.free[ramDevice] = min(in.free[ramDevice], s.opts.LimitRAM-ourRAM)
	}
	for _, id := range order {
		if c, ok := byModel[id]; ok {
			in.loaded = append(in.loaded, c)
		}
	}
	return in, nil
}

// idleOthers are the loaded models other than b that may be stopped and
// serve no request.
func (s *Swapper) idleOthers(b *backend) []*backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*backend
	for _, o := range s.backends {
		if o != b && o.state == Ready && o.cur.inflight == 0 && !o.model.Pinned {
			out = append(out, o)
		}
	}
	return out
}
