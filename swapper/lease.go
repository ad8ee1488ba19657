package swapper

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Lease holds a ready backend against being stopped until Release.
type Lease struct {
	s    *Swapper
	b    *backend
	inst *instance
	once sync.Once
	keep keepAlive // see KeepAlive
}

// Upstream is the backend's base URL, without a trailing slash.
func (l *Lease) Upstream() string { return l.inst.upstream }

// Instance identifies this run of the backend: it changes whenever the
// backend is restarted, so that callers can drop connections to the old one.
func (l *Lease) Instance() uint64 { return l.inst.id }

// Gone is closed when the backend instance has stopped or died.
func (l *Lease) Gone() <-chan struct{} { return l.inst.gone }

// Cause says, once Gone is closed, why the instance was stopped under its
// requests on purpose (ErrDrainTimeout, ErrClosed); nil if it died.
func (l *Lease) Cause() error {
	select {
	case <-l.inst.gone:
	default:
		return nil
	}
	l.s.mu.Lock()
	defer l.s.unlock()
	return l.inst.cause
}

// Unreachable reports that a connection to the backend was refused:
// nothing listens on its port any more, though its process (a wrapper
// script, say) may live on. The backend is then treated as crashed: it
// takes no new requests, its process group is stopped and its memory
// freed, and the next request starts it again. Any other error (a timeout,
// a reset) is ignored: a slow or busy backend is not dead. So is a report
// on a run of the backend that has been replaced or is being stopped. It
// reports whether the backend was taken for dead now. The lease must still
// be released.
func (l *Lease) Unreachable(err error) bool { return l.s.unreachable(l.b, l.inst, err) }

// Release gives the lease back. It is safe to call more than once.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.s.mu.Lock()
		defer l.s.unlock()
		l.inst.inflight--
		l.b.lastUsed = l.s.clock.Now()
		l.b.bumpFreq(l.b.lastUsed)
		if l.inst.inflight == 0 && l.inst.idle != nil {
			close(l.inst.idle)
			l.inst.idle = nil
		}
		if l.b.cur == l.inst {
			l.b.keep = l.keep
			l.s.restartIfIdleLocked(l.b)
			// keep_alive 0: it leaves now, not at the janitor's next look.
			if b := l.b; b.keep.set && b.keep.d == 0 && !b.pinned && b.state == Ready && l.inst.inflight == 0 {
				l.s.expireLocked(b, 0)
			}
		}
	})
}

// TryLease leases model's backend if it is ready, and never waits: a
// backend that is loading, leaving or stopped is not leased. It is the
// router's one question on the fast path, and the answer cannot go stale:
// a backend leased here is stopped only once the lease is released (or
// past the drain timeout).
//
// The lease is made in l, which must be a Lease never used before: the
// router keeps it in the request's ticket, so that the fast path does not
// allocate one.
func (s *Swapper) TryLease(model string, l *Lease) bool {
	s.mu.Lock()
	defer s.unlock()
	b, ok := s.backends[model]
	if !ok || b.state != Ready || s.closed {
		return false
	}
	s.leaseLocked(b, l)
	return true
}

func (s *Swapper) leaseLocked(b *backend, l *Lease) {
	b.cur.inflight++
	b.lastUsed = s.clock.Now()
	s.lru.Add(b.model.ID, struct{}{})
	l.s, l.b, l.inst = s, b, b.cur
}

// acquire returns once model's backend is ready, starting it with p if
// need be, and holds it until the lease is released. ctx bounds only this
// caller's wait: a start it asked for goes on for the others. It is the
// tests' way in (see export_test.go): in hotswap, models are started by the
// router, the one door, through Start and TryLease.
func (s *Swapper) acquire(ctx context.Context, model string, p Policy) (*Lease, error) {
	for {
		s.mu.Lock()
		b, ok := s.backends[model]
		switch {
		case !ok:
			s.unlock()
			return nil, fmt.Errorf("%w: %q", ErrUnknownModel, model)
		case s.closed:
			s.unlock()
			return nil, ErrClosed
		case b.state == Ready:
			l := new(Lease)
			s.leaseLocked(b, l)
			s.unlock()
			return l, nil
		}
		wait := b.changed
		if b.state == Stopped || b.state == Asleep {
			_, err := s.startLocked(b, p)
			switch {
			case errors.Is(err, ErrMemoryInTransit):
				wait = s.changed // what is in the way may be anything
			case err != nil:
				s.unlock()
				return nil, err
			}
		}
		s.unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
