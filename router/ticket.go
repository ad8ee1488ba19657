package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/swapper"
)

// Phase is where a waiting request is, for the people watching it.
type Phase int32

const (
	Queued  Phase = iota // in its model's queue
	Loading              // in its queue, its model loading
)

func (p Phase) String() string {
	if p == Loading {
		return "loading"
	}
	return "queued"
}

// Ticket is one request's place in the router, from its queue to a lease.
// Its methods are for the one goroutine serving the request.
type Ticket struct {
	r        *Router
	model    string
	ctx      context.Context
	enqueued time.Time
	// queueTimeout is the router's when the request arrived.
	queueTimeout time.Duration

	// ready is set by sched once it has decided: refused with err, or,
	// with none, granted slease (both written before it). signal, made
	// only when the owner has to wait, then receives one value. sched
	// decides, and the owner makes signal, under the router's lock: a
	// request whose backend is free is served without a channel.
	ready  atomic.Bool
	signal chan struct{}
	err    error
	phase  phaseValue
	// slease is the lease sched grants, made here by TryLease: part of
	// the ticket, so that a request costs one allocation fewer.
	slease swapper.Lease

	// load is an operator's load's options; nil for a request.
	load *LoadOptions

	// Owned by sched.
	queued bool

	// Owned by the request's goroutine.
	decided  bool
	deadline clock.Timer
	lease    *Lease
	finalErr error
	closed   bool
	// own is the lease Next hands out: part of the ticket, so that a
	// request costs one allocation fewer.
	own Lease
}

// Bind replaces the context that bounds the wait (the one given to
// Enqueue). A caller that usually has its lease at once can enqueue with
// context.Background and make a cancellable context only when it has to
// wait. Call it from the request's goroutine, before the Next it bounds.
func (t *Ticket) Bind(ctx context.Context) { t.ctx = ctx }

// Phase is where the request is now.
func (t *Ticket) Phase() Phase { return t.phase.load() }

// Waited is how long the request has waited so far.
func (t *Ticket) Waited() time.Duration { return t.r.clock.Now().Sub(t.enqueued) }

// Next waits up to d (without limit when d <= 0) for the request's lease.
// It returns (nil, nil) if d passed first; the request keeps its place.
// Once it has returned a lease or an error, it returns the same again.
// The request waits only here, in its queue, so QueueTimeout bounds the
// whole wait, its model's load and any swap included.
func (t *Ticket) Next(d time.Duration) (*Lease, error) {
	if t.lease != nil || t.finalErr != nil {
		return t.lease, t.finalErr
	}
	if !t.ready.Load() && t.mustWait() {
		// The interval's timer is made only once a wait is certain: a
		// ready backend with a free slot is handed over without one.
		var tick <-chan time.Time
		if d > 0 {
			tm := t.r.clock.NewTimer(d)
			defer tm.Stop()
			tick = tm.C()
		}
		select {
		case <-t.signal:
		case <-t.ctx.Done():
			return nil, t.leave(t.ctx.Err())
		case <-t.timeout():
			return nil, t.leave(t.timeoutErr())
		case <-tick:
			return nil, nil
		}
	}
	t.decided = true
	if t.err != nil {
		return nil, t.finish(nil, t.err)
	}
	l := t.lease0()
	t.finish(l, nil)
	return l, nil
}

// mustWait makes the ticket's signal unless sched has decided already,
// and reports whether the owner has to wait for it.
func (t *Ticket) mustWait() bool {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	if t.ready.Load() {
		return false
	}
	if t.signal == nil {
		t.signal = make(chan struct{}, 1)
	}
	return true
}

// leave takes a request that gave up out of its queue. sched may have
// decided meanwhile; then a lease is handed back.
func (t *Ticket) leave(err error) error {
	// sched decides on the cancel if it had not before (a closed router
	// has refused every request it held), under the lock send takes: the
	// answer is there when send returns.
	t.r.send(event{kind: evCancel, t: t, err: err})
	t.decided = true
	if t.err == nil {
		t.lease0().Release()
	} else if !errors.Is(t.err, err) {
		err = t.err // refused before it left: that is the answer
	}
	return t.finish(nil, err)
}

// lease0 makes the ticket's own lease of what sched granted.
func (t *Ticket) lease0() *Lease {
	t.own.Lease, t.own.t, t.own.start = &t.slease, t, t.r.clock.Now()
	return &t.own
}

func (t *Ticket) finish(l *Lease, err error) error {
	t.lease, t.finalErr = l, err
	if t.deadline != nil {
		t.deadline.Stop()
	}
	return err
}

// timeout fires when the request has waited QueueTimeout.
func (t *Ticket) timeout() <-chan time.Time {
	qt := t.queueTimeout
	if qt <= 0 {
		return nil
	}
	if t.deadline == nil {
		t.deadline = t.r.clock.NewTimer(t.enqueued.Add(qt).Sub(t.r.clock.Now()))
	}
	return t.deadline.C()
}

func (t *Ticket) timeoutErr() error {
	return fmt.Errorf("%w %q after %s", ErrQueueTimeout, t.model, t.queueTimeout)
}

// Close gives up the request if it has no lease yet: it leaves its queue,
// and a lease decided meanwhile is handed back. A lease Next returned is
// not touched (Release that). Close is safe to call more than once.
func (t *Ticket) Close() {
	if t.closed {
		return
	}
	t.closed = true
	if t.lease == nil && t.finalErr == nil {
		t.leave(context.Canceled)
	}
}

// Lease is a ready backend for one request, and the request's slot.
type Lease struct {
	*swapper.Lease
	t     *Ticket
	start time.Time
	once  sync.Once
}

// Release frees the backend and the slot. Safe to call more than once.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.Lease.Release()
		l.t.r.send(event{kind: evDone, t: l.t, held: l.t.r.clock.Now().Sub(l.start)})
	})
}
