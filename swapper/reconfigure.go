package swapper

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
)

// A reload reaches the swapper as Reconfigure and Remove. A backend's
// model is fixed for the backend's life, since the goroutines carrying
// out its start, drain and stop read it without the lock: a new
// configuration takes a new backend, swapped in under the lock once the
// old one has stopped (settledLocked). What a reload changes at once
// (ttl, pinned, memory reserves, timeouts) lives outside it.

func newBackend(m *config.Model) *backend {
	return &backend{model: m, changed: make(chan struct{}), ttl: m.TTL, pinned: m.Pinned, sleep: m.Sleep}
}

// Settings are the swapper's options that a reload changes at once.
type Settings struct {
	ReserveRAM, ReserveVRAM, LimitRAM int64
	CooldownMax, DrainTimeout         time.Duration
	// Eviction is Options.Eviction.
	Eviction string
}

// Reconfigure applies a reloaded configuration. set applies at once, as do
// each model's ttl and pinned. A model not known before is known from now
// on. A known model whose new configuration needs a restart
// (config.Model.RestartNeeded) takes it when it stops: at once if it is
// stopped, else once it is idle, and then it is started again if it fits
// without stopping another model (else its next request starts it). Other
// changes take effect at its next start. Models missing from models are
// left alone: Remove retires them.
func (s *Swapper) Reconfigure(models map[string]*config.Model, set Settings) {
	s.estimateAll(models) // reads files: before the lock
	s.mu.Lock()
	defer s.unlock()
	s.opts.Models = models
	s.opts.ReserveRAM, s.opts.ReserveVRAM, s.opts.LimitRAM = set.ReserveRAM, set.ReserveVRAM, set.LimitRAM
	s.opts.CooldownMax = set.CooldownMax
	s.opts.Eviction = set.Eviction
	if set.DrainTimeout > 0 {
		s.opts.DrainTimeout = set.DrainTimeout
	}
	for id, m := range models {
		b, ok := s.backends[id]
		if !ok {
			s.backends[id] = newBackend(m)
			continue
		}
		b.ttl, b.pinned, b.sleep = m.TTL, m.Pinned, m.Sleep
		b.next = m
		switch {
		case b.state == Stopped && b.start == nil:
			s.settledLocked(b)
		case b.model.RestartNeeded(m) && b.state == Asleep:
			// Asleep with the old configuration: it goes, and the next
			// request starts it with the new one.
			s.stopAsleepLocked(b, reconfigured)
		case b.model.RestartNeeded(m) && b.cur != nil && b.cur.asleep != nil:
			// On its way to sleep: it stops instead (or, if its sleep
			// is under way, once asleep: see putToSleep).
			b.cur.noSleep = true
		case b.model.RestartNeeded(m) && (b.state == Ready || b.state == Starting):
			b.stale = true
			s.restartIfIdleLocked(b)
		}
	}
	s.lru.Resize(max(1, len(s.backends)))
	s.changedLocked(nil)
}

// reconfigured is the reason a stale backend leaves.
const reconfigured = "its configuration changed"

// restartIfIdleLocked sends a stale backend (one whose configuration
// changed under it) on its way out once it is ready and idle; it is
// started again once stopped (see settledLocked).
func (s *Swapper) restartIfIdleLocked(b *backend) {
	if b.stale && b.state == Ready && b.cur.inflight == 0 {
		s.leaveLocked(b, reconfigured)
	}
}

// settledLocked is called once b has stopped: a new configuration waiting
// for it takes effect, and the model is started again if it was asked to
// be and fits without stopping another.
func (s *Swapper) settledLocked(b *backend) {
	id := b.model.ID
	if b.next == nil || s.backends[id] != b || b.state != Stopped {
		return
	}
	nb := newBackend(b.next)
	nb.lastUsed = b.lastUsed
	nb.freq, nb.freqSet = b.freq, b.freqSet
	if !b.model.RestartNeeded(b.next) {
		// Nothing the backend runs with changed: a back-off stands.
		nb.failures, nb.retryAt, nb.lastErr = b.failures, b.retryAt, b.lastErr
	}
	s.backends[id] = nb
	s.changedLocked(b) // waiters on the old backend look again
	if !b.restart || s.closed {
		return
	}
	// Every other model counts as busy: a restart nobody asked for
	// evicts nothing.
	_, err := s.startLocked(nb, Policy{Busy: func(string) bool { return true }, Reason: reconfigured})
	if err != nil {
		s.say(zap.InfoLevel, "not restarting with the new configuration until a request asks for it",
			zap.String("model", id), zap.Error(err))
	}
}

// Remove retires a model the last Reconfigure left out: it is drained and
// stopped as by Unload (in-flight requests finish), then forgotten. A
// model Reconfigure has brought back meanwhile is kept. It returns once
// the model is gone or kept, or ctx ends.
func (s *Swapper) Remove(ctx context.Context, model string) error {
	for {
		s.mu.Lock()
		b, ok := s.backends[model]
		if _, kept := s.opts.Models[model]; !ok || kept {
			s.unlock()
			return nil
		}
		if b.state == Stopped {
			delete(s.backends, model)
			s.lru.Remove(model)
			s.changedLocked(b)
			s.unlock()
			s.log.Info("model removed", zap.String("model", model))
			return nil
		}
		s.unlock()
		if err := s.Unload(ctx, model, false); err != nil {
			return fmt.Errorf("removing %q: %w", model, err)
		}
	}
}
