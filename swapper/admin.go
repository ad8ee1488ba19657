package swapper

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/state"
)

// What operators ask of the lifecycle's owner: they go through the same
// decisions and the same lock as requests, so they never race a swap.

// Statuses reports every model, in no particular order.
func (s *Swapper) Statuses() []Status {
	s.mu.Lock()
	ids := make([]string, 0, len(s.backends))
	for id := range s.backends {
		ids = append(ids, id)
	}
	s.unlock()
	out := make([]Status, 0, len(ids))
	for _, id := range ids {
		if st, ok := s.Status(id); ok {
			out = append(out, st)
		}
	}
	return out
}

// Unload stops model's backend: it takes no new requests, those in flight
// finish (or, with force, are cut and told ErrUnloaded), then it stops. A
// start in progress is called off. It returns once the model is stopped,
// or when ctx ends.
func (s *Swapper) Unload(ctx context.Context, model string, force bool) error {
	s.mu.Lock()
	b, ok := s.backends[model]
	if !ok {
		s.unlock()
		return fmt.Errorf("%w: %q", ErrUnknownModel, model)
	}
	if b.state == Ready || b.state == Starting || b.state == Asleep {
		s.publish(events.Event{Type: events.Unload, Model: model, Data: map[string]any{"force": force}})
	}
	switch b.state {
	case Ready:
		s.leaveLocked(b, "unloaded")
	case Starting:
		b.start.cancel()
	case Asleep:
		s.stopAsleepLocked(b, "unloaded")
	}
	if b.cur != nil {
		// Unloaded, it stops: a sleep decided for it is not made.
		b.cur.noSleep = true
	}
	if force && b.cur != nil && !isClosed(b.cur.cut) {
		close(b.cur.cut)
	}
	// The unload is of what runs, or is starting, now: it is done once
	// that has gone, even if requests queued meanwhile have started the
	// model again (a new run, which nothing asked to unload). Waiting for
	// Stopped alone would wait for ever when a stop and the next start
	// follow each other under the lock, as they do for queued requests.
	cur, dec := b.cur, b.start
	ended := func() bool {
		switch {
		case b.state == Stopped:
			return true
		case cur != nil: // a process: its exit
			return isClosed(cur.gone)
		default: // a start not yet spawned: called off, and no other run since
			return dec != nil && b.start != dec && b.cur == nil
		}
	}
	for !ended() {
		if b.state == Asleep && b.cur == cur && cur != nil {
			// It was going to sleep as it was unloaded: it stops now.
			s.stopAsleepLocked(b, "unloaded")
		}
		wait := b.changed
		s.unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	s.unlock()
	return nil
}

// DeviceReport is one device's memory as the lifecycle's owner sees it.
type DeviceReport struct {
	Device string // "ram", "gpu0", ...
	Name   string // the GPU's name; "" for RAM
	// Vendor is the GPU's maker (probe.VendorNVIDIA, ...); "" for RAM
	// and for a GPU whose maker the probe did not say.
	Vendor string
	// Unified says the GPU's memory is system RAM (an APU, Apple
	// Silicon): Total is the part of RAM the GPU may use, and what models
	// use here they use in RAM too (RAM's Used counts it).
	Unified bool
	Total   int64
	// Free is what the probe saw at its last look.
	Free int64
	// Reserve is what is always left free (reserve_ram, reserve_vram).
	Reserve int64
	// Used is what each running backend is measured to use here.
	Used map[string]int64
	// Reserved is what starts in progress have yet to take here.
	Reserved int64
	// Available is what planning counts as free for a new start: free,
	// less the reserve and reservations (and, for RAM, within limit_ram).
	Available int64
	// Limit is limit_ram, for RAM (0: none): what all backends together
	// may use, whatever the machine has free.
	Limit int64
	// Measured is when memory was last looked at.
	Measured time.Time
}

// Memory reports every device, RAM first; with fresh, it looks at memory
// again first (as GET /admin/memory does; metrics go by the last look).
func (s *Swapper) Memory(fresh bool) []DeviceReport {
	if fresh {
		s.refresh()
	}
	s.mu.Lock()
	defer s.unlock()
	if s.opts.Memory == nil {
		return nil
	}
	in, _ := s.planInputLocked(nil, Policy{})
	var out []DeviceReport
	for _, d := range s.snap.devs {
		r := DeviceReport{Device: deviceName(d.Index), Total: d.Total, Free: d.Free, Used: map[string]int64{},
			Available: in.free[d.Index], Measured: s.snap.at}
		if d.Index == ramDevice {
			r.Reserve, r.Limit = s.opts.ReserveRAM, s.opts.LimitRAM
		} else {
			r.Name, r.Vendor, r.Unified, r.Reserve = d.Model, d.Vendor, d.Unified, s.opts.ReserveVRAM
		}
		for id, b := range s.backends {
			inst := b.cur
			if inst == nil {
				continue
			}
			mram, mvram, nram, nvram := s.snap.counts(inst)
			used, need := mram, nram
			switch {
			case d.Index == ramDevice:
			case inst.gpu == d.Index:
				used, need = mvram, nvram
			default:
				continue
			}
			if used > 0 {
				r.Used[id] = used
			}
			r.Reserved += max(0, need-used)
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Device == "ram" && out[j].Device != "ram" })
	return out
}

// Footprint is what model has been measured to use at most, run with the
// command it has now.
func (s *Swapper) Footprint(model string) state.Footprint {
	s.mu.Lock()
	b, ok := s.backends[model]
	s.unlock()
	if !ok {
		return state.Footprint{}
	}
	return s.opts.Footprints.Footprint(state.Key(b.model))
}
