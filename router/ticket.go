package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hotswap/hotswap/swapper"
)

// Phase is where a waiting request is, for the people watching it.
type Phase int32

const (
	Queued  Phase = iota // in its model's queue
	Loading              // dispatched, its backend not yet ready
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
	backends Backends
	model    string
	ctx      context.Context
	enqueued time.Time

	// signal receives one value when sched has decided: granted, or
	// refused with err. The fields below it are written by sched before
	// that send and read by the owner after it.
	signal  chan struct{}
	granted bool
	loading bool // granted while the backend was not ready: report back
	err     error
	phase   phaseValue

	// Owned by sched.
	queued bool

	// Owned by the request's goroutine.
	decided  bool
	acq      chan acquired // a swapper.Acquire in progress
	actx     context.Context
	abort    context.CancelFunc
	deadline *time.Timer
	lease    *Lease
	finalErr error
	closed   bool
}

type acquired struct {
	l   *swapper.Lease
	err error
}

// Phase is where the request is now.
func (t *Ticket) Phase() Phase { return t.phase.load() }

// Waited is how long the request has waited so far.
func (t *Ticket) Waited() time.Duration { return time.Since(t.enqueued) }

// Next waits up to d (without limit when d <= 0) for the request's turn
// and its ready backend. It returns (nil, nil) if d passed first; the
// request keeps its place. Once it has returned a lease or an error, it
// returns the same again.
func (t *Ticket) Next(d time.Duration) (*Lease, error) {
	if t.lease != nil || t.finalErr != nil {
		return t.lease, t.finalErr
	}
	// The interval's timer is made only once a wait is certain: a ready
	// backend with a free slot is handed over without one.
	var tm *time.Timer
	ticking := func() <-chan time.Time {
		if tm == nil && d > 0 {
			tm = time.NewTimer(d)
		}
		if tm == nil {
			return nil
		}
		return tm.C
	}
	defer func() {
		if tm != nil {
			tm.Stop()
		}
	}()
	if !t.decided {
		select {
		case <-t.signal:
		default:
			select {
			case <-t.signal:
			case <-t.ctx.Done():
				return nil, t.leave(t.ctx.Err())
			case <-t.timeout():
				return nil, t.leave(t.timeoutErr())
			case <-ticking():
				return nil, nil
			}
		}
		t.decided = true
		if !t.granted {
			return nil, t.finish(nil, t.err)
		}
	}
	if t.acq == nil && t.backends.State(t.model) == swapper.Ready {
		l, err := t.backends.Acquire(t.ctx, t.model)
		return t.got(l, err)
	}
	if t.acq == nil {
		t.acquire()
	}
	select {
	case a := <-t.acq:
		return t.got(a.l, a.err)
	case <-ticking():
		return nil, nil
	}
}

// acquire waits for the backend on another goroutine, so that Next can
// return while it loads.
func (t *Ticket) acquire() {
	ctx, cancel := context.WithCancel(t.ctx)
	if qt := t.r.opts.QueueTimeout; qt > 0 {
		ctx, cancel = context.WithDeadline(t.ctx, t.enqueued.Add(qt))
	}
	t.actx, t.abort = ctx, cancel
	t.acq = make(chan acquired, 1)
	go func() {
		l, err := t.backends.Acquire(ctx, t.model)
		t.acq <- acquired{l, err}
	}()
}

// got settles a granted request with what the swapper gave it.
func (t *Ticket) got(l *swapper.Lease, err error) (*Lease, error) {
	// Our own deadline, told apart from the caller leaving and from errors
	// that merely wrap a deadline (a backend's failed health check).
	if err != nil && t.actx != nil && errors.Is(t.actx.Err(), context.DeadlineExceeded) && t.ctx.Err() == nil {
		err = t.timeoutErr()
	}
	if t.abort != nil {
		t.abort()
	}
	if err != nil {
		t.r.send(event{kind: evDone, t: t})
		return nil, t.finish(nil, err)
	}
	if t.loading {
		t.r.send(event{kind: evLoaded, t: t})
	}
	lease := &Lease{Lease: l, t: t, start: time.Now()}
	t.finish(lease, nil)
	return lease, nil
}

// leave takes a request that gave up out of its queue. sched may have
// granted it meanwhile; then the grant is handed back.
func (t *Ticket) leave(err error) error {
	t.r.send(event{kind: evCancel, t: t, err: err})
	<-t.signal
	t.decided = true
	if t.granted {
		t.r.send(event{kind: evDone, t: t})
	} else if t.err != nil && !errors.Is(t.err, err) {
		err = t.err // refused before it left: that is the answer
	}
	return t.finish(nil, err)
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
	qt := t.r.opts.QueueTimeout
	if qt <= 0 {
		return nil
	}
	if t.deadline == nil {
		t.deadline = time.NewTimer(time.Until(t.enqueued.Add(qt)))
	}
	return t.deadline.C
}

func (t *Ticket) timeoutErr() error {
	return fmt.Errorf("%w %q after %s", ErrQueueTimeout, t.model, t.r.opts.QueueTimeout)
}

// Close gives up the request if it has no lease yet: it leaves its queue,
// or hands back its dispatch. A lease it returned is not touched (Release
// that). Close is safe to call more than once.
func (t *Ticket) Close() {
	if t.closed {
		return
	}
	t.closed = true
	switch {
	case t.lease != nil || t.finalErr != nil:
	case !t.decided:
		t.leave(context.Canceled)
	default: // granted: Next left it acquiring
		t.abort()
		a := <-t.acq
		if a.l != nil {
			a.l.Release()
		}
		t.r.send(event{kind: evDone, t: t})
		t.finish(nil, context.Canceled)
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
		l.t.r.send(event{kind: evDone, t: l.t, held: time.Since(l.start)})
	})
}
