package swapper

import (
	"time"

	"go.uber.org/zap"
)

// watch notices a backend that exits on its own.
func (s *Swapper) watch(b *backend, inst *instance) {
	defer s.wg.Done()
	<-inst.proc.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.cur != inst || b.state == Stopping {
		return // stop() owns this exit
	}
	s.log.Error("backend exited unexpectedly",
		zap.String("model", b.model.ID),
		zap.Int("pid", inst.proc.Pid()),
		zap.NamedError("exit", inst.proc.ExitErr()),
		zap.Strings("output", inst.proc.Tail()))
	s.retireLocked(b, inst)
}

// retireLocked marks inst as gone.
func (s *Swapper) retireLocked(b *backend, inst *instance) {
	b.state = Stopped
	b.cur = nil
	s.lru.Remove(b.model.ID)
	s.ports.release(inst.port)
	if inst.idle != nil {
		close(inst.idle)
		inst.idle = nil
	}
	close(inst.gone)
}

// stop drains b (no new leases; in-flight ones finish, for at most the
// drain timeout) and stops its process. It returns once the process has
// exited. If only is set, b is stopped only if only(b) holds when it is
// checked under the lock (a TTL unload must not race a new request).
func (s *Swapper) stop(b *backend, reason string, only func(*backend) bool) {
	s.mu.Lock()
	inst := b.cur
	if inst == nil || b.state != Ready || (only != nil && !only(b)) {
		s.mu.Unlock()
		if inst != nil && only == nil {
			<-inst.gone // someone else is stopping it
		}
		return
	}
	b.state = Draining
	log := s.log.With(zap.String("model", b.model.ID), zap.String("reason", reason))
	drainEnd := time.Now().Add(s.opts.DrainTimeout)
	for inst.inflight > 0 && b.cur == inst && time.Now().Before(drainEnd) {
		if inst.idle == nil {
			inst.idle = make(chan struct{})
		}
		idle := inst.idle
		log.Info("draining backend", zap.Int("in_flight", inst.inflight))
		s.mu.Unlock()
		t := time.NewTimer(time.Until(drainEnd))
		select {
		case <-idle:
		case <-inst.gone:
		case <-t.C:
		}
		t.Stop()
		s.mu.Lock()
	}
	if b.cur != inst { // it died while draining
		s.mu.Unlock()
		return
	}
	if inst.inflight > 0 {
		log.Warn("drain timeout passed; stopping backend under its requests",
			zap.Int("in_flight", inst.inflight), zap.Duration("drain_timeout", s.opts.DrainTimeout))
	}
	b.state = Stopping
	s.mu.Unlock()

	begin := time.Now()
	inst.proc.Stop(b.model.StopTimeout)
	log.Info("backend stopped", zap.Duration("took", time.Since(begin)))

	s.mu.Lock()
	s.retireLocked(b, inst)
	s.mu.Unlock()
}

// janitor unloads models that have been idle for their ttl.
func (s *Swapper) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.TTLInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		expired := func(b *backend) bool {
			ttl := b.model.TTL
			return ttl > 0 && !b.model.Pinned && b.state == Ready && b.cur.inflight == 0 &&
				time.Since(b.lastUsed) >= ttl
		}
		s.mu.Lock()
		var due []*backend
		for _, b := range s.backends {
			if expired(b) {
				due = append(due, b)
			}
		}
		s.mu.Unlock()
		for _, b := range due {
			s.stop(b, "idle for its ttl ("+b.model.TTL.String()+")", expired)
		}
	}
}
