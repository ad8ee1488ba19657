package swapper

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/probe"
)

func sumVRAM(u probe.Usage) int64 {
	var n int64
	for _, v := range u.VRAM {
		n += v
	}
	return n
}

// measureInstance records what inst uses now and, with learn, raises its
// model's learned footprint if it grew. A backend that is still loading
// has not reached its footprint, so only ready ones teach us anything.
func (s *Swapper) measureInstance(ctx context.Context, b *backend, inst *instance, learn bool) {
	if s.opts.Memory == nil {
		return
	}
	u, err := s.opts.Memory.Usage(ctx, inst.proc.Pid())
	if err != nil {
		if !errors.Is(err, probe.ErrNoProcess) {
			s.log.Debug("measuring backend", zap.String("model", b.model.ID), zap.Error(err))
		}
		return
	}
	s.mu.Lock()
	inst.usage, inst.measured = u, true
	s.mu.Unlock()
	if !learn {
		return
	}
	if s.opts.Footprints.Observe(b.model.ID, u.RAM, sumVRAM(u)) {
		fp := s.opts.Footprints.Get(b.model.ID)
		s.log.Info("learned footprint", zap.String("model", b.model.ID),
			zap.String("ram", FormatBytes(fp.RAM)), zap.String("vram", FormatBytes(fp.VRAM)),
			zap.String("declared_ram", FormatBytes(b.model.Memory.RAM)),
			zap.String("declared_vram", FormatBytes(b.model.Memory.VRAM)))
		if err := s.opts.Footprints.Save(); err != nil {
			s.log.Warn("saving footprints", zap.Error(err))
		}
	}
}

// measure takes a ready instance's first measurement, then keeps measuring
// it while it runs: a backend's use grows with its caches.
func (s *Swapper) measure(b *backend, inst *instance) {
	if s.opts.Memory == nil {
		return
	}
	s.measureInstance(s.ctx, b, inst, true)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.opts.MeasureInterval)
		defer t.Stop()
		for {
			select {
			case <-inst.gone:
				return
			case <-s.ctx.Done():
				return
			case <-t.C:
				s.measureInstance(s.ctx, b, inst, true)
			}
		}
	}()
}
