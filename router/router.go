// Package router decides which waiting request goes to a backend next. Each
// model has a bounded FIFO queue and a cap on the requests its backend is
// sent at once (its parallel setting); when models do not all fit in
// memory, the scheduling policy decides when a swap is worth it.
//
// The router decides *when* a model may come in and who is served; the
// swapper decides, once, *how*: what it evicts, and where it goes. The
// router's decisions are made by one owner of the queues and counters,
// sched, under one lock: requests, releases and the swapper's changes
// reach it as events, and nothing it calls waits. A request is handed a
// lease taken under that lock (swapper.TryLease), so what it is handed
// cannot have gone stale; a request that cannot have one yet waits in its
// queue, and only there. A lock rather than a goroutine of its own: the
// decisions are the same, serialised the same way, but a request for a
// ready model is served without two goroutine hand-offs.
package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/swapper"
)

// ErrQueueFull is wrapped by *QueueFullError.
var ErrQueueFull = errors.New("too many requests waiting for this model")

// ErrQueueTimeout is returned when a request waited QueueTimeout without
// being served.
var ErrQueueTimeout = errors.New("timed out waiting for the model")

// QueueFullError refuses a request because its model's queue is full.
type QueueFullError struct {
	Model string
	Size  int
	// RetryAfter is an estimate of when the queue will have room.
	RetryAfter time.Duration
}

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("%v: %d requests are queued for %q", ErrQueueFull, e.Size, e.Model)
}

func (e *QueueFullError) Unwrap() error { return ErrQueueFull }

// Backends is what the router needs of the swapper: the request path's
// decisions, none of which waits, and the operator's intents the router
// passes on (see intents.go), which may.
type Backends interface {
	// TryLease leases model's backend into l if it is ready.
	TryLease(model string, l *swapper.Lease) bool
	// Start decides how model comes in and starts carrying it out.
	Start(model string, p swapper.Policy) (swapper.Decision, error)
	// State is model's state now.
	State(model string) swapper.State
	// Prefetch begins reading a stopped model's weight files into the
	// page cache for requests that wait for its start, without waiting;
	// stop ends it. It ends on its own once done, or when the model's
	// start is decided.
	Prefetch(model string) (stop func())
	// Watch has f called on every change of a backend's state, and when
	// memory was looked at again.
	Watch(f func(model string))

	// Unload stops model's backend (draining it first unless force),
	// returning once it has stopped or ctx has ended.
	Unload(ctx context.Context, model string, force bool) error
	// Reconfigure and Remove apply a reload (see swapper.Reconfigure).
	Reconfigure(models map[string]*config.Model, set swapper.Settings)
	Remove(ctx context.Context, model string) error
}

// Options configure a Router.
type Options struct {
	// Parallel is how many requests each model's backend is sent at once;
	// models not listed are unknown to the router.
	Parallel map[string]int
	// Policy is config.PolicyBatch (the default) or config.PolicyFIFO.
	Policy string
	// MaxWait is, under the batch policy, how long a request waits before
	// its model is swapped in over busy ones.
	MaxWait time.Duration
	// IdleGrace is how long after its last request a model still counts
	// as busy (see sched.busyAt).
	IdleGrace time.Duration
	// QueueSize bounds each model's queue (default 256); QueueTimeout
	// bounds a request's whole wait, loading included (0: no bound).
	QueueSize    int
	QueueTimeout time.Duration
	Log          *zap.Logger
	// Clock is the time waits and timeouts go by; nil is the real clock.
	Clock clock.Clock
}

// Router admits requests to models. Create it with New and stop it with
// Close.
type Router struct {
	opts  Options
	clock clock.Clock
	log   *zap.Logger // opts.Log, which a reload does not change

	// mu serialises every decision: only its holder touches s.
	mu sync.Mutex
	s  *sched
	// stats are the models' counters, by id, readable without mu.
	stats atomic.Pointer[map[string]*Stats]
	// queueTimeout is opts.QueueTimeout, readable without mu.
	queueTimeout atomic.Int64
	closed       bool
	timer        clock.Timer
	armed        time.Time // when timer fires; zero if not armed
}

// Stats are a model's live counters.
type Stats struct {
	Queued   atomic.Int64 // waiting in its queue
	InFlight atomic.Int64 // dispatched and not yet released, loading included
}

// New returns a Router in front of backends.
func New(backends Backends, opts Options) *Router {
	if opts.Policy == "" {
		opts.Policy = config.PolicyBatch
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = config.DefaultQueueSize
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	r := &Router{opts: opts, clock: clock.Or(opts.Clock), log: opts.Log, s: newSched(backends, opts)}
	r.publishStatsLocked()
	r.queueTimeout.Store(int64(opts.QueueTimeout))
	r.timer = r.clock.AfterFunc(time.Hour, r.wake)
	r.timer.Stop()
	backends.Watch(func(string) { r.send(event{kind: evChanged}) })
	return r
}

// Enqueue puts a request for model in its queue and returns its ticket.
// The ticket's Next hands over the backend once the request's turn has
// come and the backend is ready. ctx bounds the wait: when it ends, the
// request leaves the queue. The caller must Close the ticket.
func (r *Router) Enqueue(ctx context.Context, model string) (*Ticket, error) {
	return r.enqueue(ctx, model, nil)
}

// enqueue is Enqueue for a request or, with load, an operator's load.
func (r *Router) enqueue(ctx context.Context, model string, load *LoadOptions) (*Ticket, error) {
	// A model removed between this look and the queue is refused there.
	if _, ok := (*r.stats.Load())[model]; !ok {
		return nil, fmt.Errorf("%w: %q", swapper.ErrUnknownModel, model)
	}
	t := &Ticket{r: r, model: model, ctx: ctx, enqueued: r.clock.Now(),
		queueTimeout: time.Duration(r.queueTimeout.Load()), load: load}
	if !r.send(event{kind: evArrive, t: t}) {
		return nil, swapper.ErrClosed
	}
	return t, nil
}

// Acquire waits for model's turn and backend, as a request does: Enqueue
// followed by Next. The lease holds the backend until released.
func (r *Router) Acquire(ctx context.Context, model string) (*Lease, error) {
	t, err := r.Enqueue(ctx, model)
	if err != nil {
		return nil, err
	}
	l, err := t.Next(0)
	if err != nil {
		t.Close()
	}
	return l, err
}

// Stats returns model's counters, or nil for a model it does not know.
func (r *Router) Stats(model string) *Stats {
	return (*r.stats.Load())[model]
}

// publishStatsLocked makes the models' counters readable without the lock
// (a reload changes which models there are).
func (r *Router) publishStatsLocked() {
	m := make(map[string]*Stats, len(r.s.models))
	for id, ms := range r.s.models {
		if ms.emptied == nil {
			m[id] = ms.stats
		}
	}
	r.stats.Store(&m)
}

// Reconfigure applies a reloaded configuration: the policy, waits and
// queue bounds apply to every decision from now on, and each model's
// parallel cap at once. A model in opts.Parallel that was not known
// before is known from now on. A known model missing from it is removed:
// new requests for it are refused as for an unknown model, and those
// queued are served; the channel returned for it is closed once its queue
// is empty (see Remove).
func (r *Router) reconfigure(opts Options) map[string]<-chan struct{} {
	r.mu.Lock()
	opts.Log, opts.Clock = r.opts.Log, r.opts.Clock
	if opts.Policy == "" {
		opts.Policy = config.PolicyBatch
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = config.DefaultQueueSize
	}
	r.opts, r.s.opts = opts, opts
	r.queueTimeout.Store(int64(opts.QueueTimeout))
	removed := map[string]<-chan struct{}{}
	for id, m := range r.s.models {
		n, ok := opts.Parallel[id]
		switch {
		case ok:
			// Back before its queue emptied: whoever waits for the
			// removal is let go (and finds it configured again).
			if m.emptied != nil && !isClosed(m.emptied) {
				close(m.emptied)
			}
			m.parallel, m.emptied = max(1, n), nil
		case m.emptied == nil:
			m.emptied = make(chan struct{})
			removed[id] = m.emptied
			m.publish()
		}
	}
	for id, n := range opts.Parallel {
		if _, ok := r.s.models[id]; !ok {
			r.s.models[id] = &mstate{id: id, parallel: max(1, n), stats: &Stats{}}
		}
	}
	r.publishStatsLocked()
	if !r.closed {
		r.scheduleLocked() // a larger cap may serve more at once
	}
	fx := r.s.fx.take()
	r.mu.Unlock()
	fx.do(r.log)
	return removed
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// forget forgets a model a reload removed. Requests still queued for it
// (its queue did not empty in time) are refused as for an unknown model.
func (r *Router) forget(model string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.s.models[model]
	if !ok || m.emptied == nil {
		return
	}
	r.s.refuse(m, fmt.Errorf("%w: %q was removed by a reload", swapper.ErrUnknownModel, model))
	if m.inflight == 0 {
		delete(r.s.models, model)
	}
	r.publishStatsLocked()
}

// Close refuses every queued request with swapper.ErrClosed. Requests
// already dispatched keep their backends until released. Safe to call more
// than once.
func (r *Router) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.timer.Stop()
	r.s.refuseAll(swapper.ErrClosed)
}

// send hands ev to sched and lets it decide, or reports false once the
// router is closed.
func (r *Router) send(ev event) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.s.handle(ev, r.clock.Now())
	r.scheduleLocked()
	fx := r.s.fx.take()
	r.mu.Unlock()
	fx.do(r.log)
	return true
}

// wake is the timer's: a request's max_wait has passed, or a load in the
// way is looked at again.
func (r *Router) wake() {
	r.mu.Lock()
	r.armed = time.Time{}
	if !r.closed {
		r.scheduleLocked()
	}
	fx := r.s.fx.take()
	r.mu.Unlock()
	fx.do(r.log)
}

func (r *Router) scheduleLocked() {
	now := r.clock.Now()
	at := r.s.schedule(now)
	if at.IsZero() || (!r.armed.IsZero() && !at.Before(r.armed)) {
		return // an earlier or equal wake is armed already
	}
	r.timer.Reset(at.Sub(now))
	r.armed = at
}

// ConfigOptions are the Options cfg describes.
func ConfigOptions(cfg *config.Config, log *zap.Logger) Options {
	parallel := make(map[string]int, len(cfg.Models))
	for id, m := range cfg.Models {
		parallel[id] = m.Parallel
	}
	return Options{
		Parallel:     parallel,
		Policy:       cfg.Scheduling.Policy,
		MaxWait:      cfg.Scheduling.MaxWait,
		IdleGrace:    cfg.Scheduling.IdleGrace,
		QueueSize:    cfg.Scheduling.QueueSize,
		QueueTimeout: cfg.Scheduling.QueueTimeout,
		Log:          log,
	}
}
