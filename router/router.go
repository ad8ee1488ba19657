// Package router admits requests to models: it bounds how many requests a
// backend is sent at once (the model's parallel setting), how many may wait
// for it, and how long they wait, before handing a request to the swapper.
package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hotswap/hotswap/swapper"
)

// ErrQueueFull is returned when a model already has QueueSize requests
// waiting.
var ErrQueueFull = errors.New("too many requests waiting for this model")

// ErrQueueTimeout is returned when a request waited QueueTimeout without
// being served.
var ErrQueueTimeout = errors.New("timed out waiting for the model")

// Backends is what the router needs of the swapper.
type Backends interface {
	Acquire(ctx context.Context, model string) (*swapper.Lease, error)
}

// Options configure a Router.
type Options struct {
	// Parallel is how many requests each model's backend is sent at once;
	// models not listed are unknown to the router.
	Parallel     map[string]int
	QueueSize    int
	QueueTimeout time.Duration
}

// Router admits requests to models.
type Router struct {
	backends Backends
	timeout  time.Duration
	queues   map[string]*queue
}

type queue struct {
	slots chan struct{} // one token per request the backend may be sent

	mu      sync.Mutex
	waiting int
	max     int
}

// New returns a Router in front of backends.
func New(backends Backends, opts Options) *Router {
	r := &Router{backends: backends, timeout: opts.QueueTimeout, queues: make(map[string]*queue)}
	for model, n := range opts.Parallel {
		if n < 1 {
			n = 1
		}
		r.queues[model] = &queue{slots: make(chan struct{}, n), max: opts.QueueSize}
	}
	return r
}

// Lease is a swapper lease plus the concurrency slot it occupies.
type Lease struct {
	*swapper.Lease
	q    *queue
	once sync.Once
}

// Release frees the backend and the slot. Safe to call more than once.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.Lease.Release()
		<-l.q.slots
	})
}

// Acquire waits for a free slot on model and for its backend to be ready.
// The whole wait is bounded by the queue timeout.
func (r *Router) Acquire(ctx context.Context, model string) (*Lease, error) {
	q, ok := r.queues[model]
	if !ok {
		return nil, fmt.Errorf("%w: %q", swapper.ErrUnknownModel, model)
	}
	waitCtx := ctx
	if r.timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	select {
	case q.slots <- struct{}{}:
	default:
		if err := q.wait(waitCtx); err != nil {
			return nil, r.waitErr(ctx, waitCtx, err)
		}
	}
	l, err := r.backends.Acquire(waitCtx, model)
	if err != nil {
		<-q.slots
		return nil, r.waitErr(ctx, waitCtx, err)
	}
	return &Lease{Lease: l, q: q}, nil
}

// wait queues for a slot.
func (q *queue) wait(ctx context.Context) error {
	q.mu.Lock()
	if q.waiting >= q.max {
		q.mu.Unlock()
		return ErrQueueFull
	}
	q.waiting++
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
	}()
	select {
	case q.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Waiting reports how many requests wait for a slot on model.
func (r *Router) Waiting(model string) int {
	q, ok := r.queues[model]
	if !ok {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
}

// waitErr tells our own timeout apart from the caller giving up and from
// errors that merely mention a deadline (a backend's failed health check).
func (r *Router) waitErr(ctx, waitCtx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && errors.Is(waitCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("%w after %s", ErrQueueTimeout, r.timeout)
	}
	return err
}
