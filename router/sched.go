package router

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/swapper"
)

type evKind int

const (
	evArrive  evKind = iota // a request joins its queue
	evCancel                // a queued request gave up
	evDone                  // a dispatched request released its backend
	evChanged               // a backend changed state, or memory was looked at again
)

type event struct {
	kind evKind
	t    *Ticket
	err  error         // evCancel: why the request gave up
	held time.Duration // evDone: how long the backend was held
}

type phaseValue struct{ v atomic.Int32 }

func (p *phaseValue) load() Phase   { return Phase(p.v.Load()) }
func (p *phaseValue) store(x Phase) { p.v.Store(int32(x)) }

// sched is the router's state and its decisions. Only the holder of the
// router's lock touches it, and nothing it calls waits: the swapper's
// TryLease and Start answer from memory, and the waits they start run
// elsewhere and come back as evChanged. It does no I/O either, and has no
// logger to do it with: what its decisions want said goes into fx, which
// the router says once it has let go of the lock. So it is tested by
// driving it directly with a fake Backends and a fake clock, and by the
// effects it returns.
type sched struct {
	b      Backends
	opts   Options
	fx     effects
	models map[string]*mstate
	// waiting is waitingByAge's slice, reused: schedule runs for every
	// request and must not allocate on the fast path.
	waiting []*mstate
	// queued counts the requests in every queue: with none, there is
	// nothing to schedule, and a release or a request served at once
	// costs no look at the models.
	queued int
}

// mstate is one model as the scheduler sees it.
type mstate struct {
	id       string
	parallel int
	queue    []*Ticket
	inflight int // leased and not yet released
	// lastDone is when a request last released the backend: within
	// IdleGrace of it, the model is not idle (see busy).
	lastDone time.Time
	// hold is a moving average of how long a request holds the backend.
	hold  time.Duration
	stats *Stats
	// emptied, once a reload has removed the model, is closed when its
	// queue is empty: it takes no new requests, but those queued are
	// served.
	emptied chan struct{}
	// prefetch, while its queue waits for a start that would stop busy
	// models, stops the read-ahead of its weight files begun for that
	// wait (see start); nil when none was begun.
	prefetch func()
}

func newSched(b Backends, opts Options) *sched {
	s := &sched{b: b, opts: opts, models: make(map[string]*mstate, len(opts.Parallel))}
	for id, n := range opts.Parallel {
		s.models[id] = &mstate{id: id, parallel: max(1, n), stats: &Stats{}}
	}
	return s
}

func (s *sched) handle(ev event, now time.Time) {
	if ev.kind == evChanged {
		return // nothing to record: schedule looks again
	}
	t := ev.t
	m := s.models[t.model]
	switch ev.kind {
	case evArrive:
		if m == nil || m.emptied != nil {
			s.decide(t, fmt.Errorf("%w: %q was removed by a reload", swapper.ErrUnknownModel, t.model))
			return
		}
		if len(m.queue) >= s.opts.QueueSize {
			s.decide(t, &QueueFullError{Model: m.id, Size: len(m.queue), RetryAfter: m.retryAfter(len(m.queue))})
			return
		}
		t.queued = true
		m.queue = append(m.queue, t)
		s.queued++
	case evCancel:
		if !t.queued {
			return // decided already; the owner hands a lease back
		}
		i := slices.Index(m.queue, t)
		m.queue = slices.Delete(m.queue, i, i+1)
		s.queued--
		t.queued = false
		s.decide(t, ev.err)
	case evDone:
		m.inflight--
		m.lastDone = now
		// A moving average over about the last eight requests.
		m.hold += (ev.held - m.hold) / 8
	}
	m.publish()
}

// decide tells the ticket's owner: refused with err, or, with none, its
// lease (made in the ticket by TryLease).
func (s *sched) decide(t *Ticket, err error) {
	t.err = err
	t.ready.Store(true)
	if t.signal != nil {
		t.signal <- struct{}{}
	}
}

func (m *mstate) publish() {
	m.stats.Queued.Store(int64(len(m.queue)))
	m.stats.InFlight.Store(int64(m.inflight))
	if len(m.queue) == 0 {
		// Nobody waits for its start any more (served, refused, gone):
		// nothing it reads ahead is wanted.
		m.stopPrefetch()
	}
	if m.emptied != nil && len(m.queue) == 0 && !isClosed(m.emptied) {
		close(m.emptied)
	}
}

// stopPrefetch ends the read-ahead begun for m's wait, if any. Once its
// start is decided the swapper has ended it already, and this does
// nothing more; the next wait may begin another.
func (m *mstate) stopPrefetch() {
	if m.prefetch != nil {
		m.prefetch()
		m.prefetch = nil
	}
}

// retryAfter guesses when a queue of n will have room: n requests' holds
// shared among the slots, at least a second.
func (m *mstate) retryAfter(n int) time.Duration {
	d := m.hold * time.Duration(n) / time.Duration(m.parallel)
	return min(max(d, time.Second), time.Minute)
}

// refuseAll empties every queue with err.
func (s *sched) refuseAll(err error) {
	for _, m := range s.models {
		s.refuse(m, err)
	}
}

func (s *sched) refuse(m *mstate, err error) {
	for _, t := range m.queue {
		t.queued = false
		s.decide(t, err)
	}
	s.queued -= len(m.queue)
	m.queue = nil
	m.publish()
}

// schedule hands out what may go now, decides the starts the policy
// allows, and returns when it must look again without an event (zero: not
// before the next event).
func (s *sched) schedule(now time.Time) (wake time.Time) {
	if s.queued == 0 {
		return time.Time{}
	}
	if s.opts.Policy == config.PolicyFIFO {
		return s.fifo(now)
	}
	return s.batch(now)
}

// batch serves every model whose backend is ready, then starts the models
// that wait, longest waiting first: over idle models at once, over busy
// ones only once the request has waited MaxWait. So models with work keep
// their turn, and no request waits much past MaxWait plus one swap.
func (s *sched) batch(now time.Time) (wake time.Time) {
	waiting := s.waitingByAge()
	for _, m := range waiting {
		s.serve(m, now)
	}
	for _, m := range waiting {
		if len(m.queue) == 0 || m.inflight >= m.parallel {
			continue
		}
		may := stopIdle
		if now.Sub(m.queue[0].enqueued) >= s.opts.MaxWait {
			may = stopAny
		}
		if w := s.start(m, now, may); !w.IsZero() && (wake.IsZero() || w.Before(wake)) {
			wake = w
		}
	}
	return wake
}

// fifo keeps arrival order wherever order costs someone: the oldest
// waiting request's model is started over whatever is in the way, and no
// younger request's model stops anything before that request is served.
// A younger request that takes nothing from the oldest goes at once: its
// model is ready, or starts beside what is loaded without stopping
// anything. The oldest's model is ready by then, or its start committed
// (its memory reserved, its victims draining), so the younger one cannot
// delay it.
//
// Only while the oldest's start is not committed (it waits for memory
// held by loads or stops in progress, or for its own model to finish
// leaving) does everything younger wait too: the memory that frees then
// is the oldest's, and a model served meanwhile could be the one its
// start has to drain.
func (s *sched) fifo(now time.Time) time.Time {
	head := true // the next model with a request left waiting holds the oldest
	for _, m := range s.waitingByAge() {
		// Its model is in: what else waits for it goes too, up to
		// parallel, as it would have had it been sent together.
		s.serve(m, now)
		if len(m.queue) == 0 {
			continue
		}
		if !head {
			if m.inflight < m.parallel {
				s.start(m, now, stopNothing)
			}
			continue
		}
		if m.inflight < m.parallel {
			s.start(m, now, stopAny)
			if len(m.queue) == 0 {
				continue // refused: the next oldest is the oldest now
			}
		}
		head = false
		if st := s.b.State(m.id); st != swapper.Ready && st != swapper.Starting {
			return time.Time{} // its start waits for what is in transit; the change comes as evChanged
		}
	}
	return time.Time{}
}

// waitingByAge lists the models with queued requests, the longest waiting
// first.
func (s *sched) waitingByAge() []*mstate {
	out := s.waiting[:0]
	for _, m := range s.models {
		if len(m.queue) > 0 {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *mstate) int { return a.queue[0].enqueued.Compare(b.queue[0].enqueued) })
	s.waiting = out
	return out
}

// serve leases m's backend to its queue, up to its parallel setting.
func (s *sched) serve(m *mstate, now time.Time) {
	for len(m.queue) > 0 && m.inflight < m.parallel {
		if !s.b.TryLease(m.id, &m.queue[0].slease) {
			return
		}
		s.grant(m)
	}
}

// grant hands the head of m's queue the lease TryLease made in its ticket.
func (s *sched) grant(m *mstate) {
	t := m.queue[0]
	// Shifted rather than resliced, so that the queue keeps its array and
	// the next request's append does not allocate (queues are short).
	n := copy(m.queue, m.queue[1:])
	m.queue[n] = nil
	m.queue = m.queue[:n]
	s.queued--
	t.queued = false
	m.inflight++
	m.publish()
	s.decide(t, nil)
}

// room is what a start may stop to make room for its model.
type room int

const (
	stopIdle    room = iota // idle models only
	stopAny                 // busy ones too, after draining them
	stopNothing             // nothing: the model fits beside what is loaded, or waits
)

// everyModelBusy counts every model as busy, so that a start that would
// stop any of them is refused (*swapper.BusyError) and nothing is stopped.
func everyModelBusy(string) bool { return true }

// start asks the swapper to bring m in, with what the router knows: which
// models are busy, and what m may stop. It returns when to look again if
// m must wait.
func (s *sched) start(m *mstate, now time.Time, may room) (wake time.Time) {
	switch s.b.State(m.id) {
	case swapper.Starting:
		s.loading(m)
		return time.Time{} // its end comes as evChanged
	case swapper.Ready, swapper.Draining, swapper.Stopping, swapper.Sleeping:
		return time.Time{} // serving to capacity, or leaving: wait for a change
	}
	head := m.queue[0]
	waited := now.Sub(head.enqueued)
	if o := head.load; o != nil && (o.Refuse || len(o.Protect) > 0) {
		// A mode's load never drains a busy model: it is refused, or
		// waits for the model to go idle.
		may = min(may, stopIdle)
	}
	var p swapper.Policy
	switch may {
	case stopNothing:
		p.Busy, p.Reason = everyModelBusy, "fits beside what is loaded"
	case stopIdle:
		p.Busy, p.Reason = s.busyAt(now), "the models in the way are idle"
	case stopAny:
		p.Busy, p.EvictBusy, p.Reason = s.busyAt(now), true, "waited max_wait"
		if s.opts.Policy == config.PolicyFIFO {
			p.Reason = "oldest request"
		}
	}
	if o := head.load; o != nil {
		p.Busy = protecting(p.Busy, o.Protect)
		if o.Reason != "" {
			p.Reason = o.Reason
		}
	}
	d, err := s.b.Start(m.id, p)
	var be *swapper.BusyError
	switch {
	case err == nil:
		m.stopPrefetch() // the start's own read-ahead has taken over
		if d.Started {
			s.fx.swaps = append(s.fx.swaps, swapIn{model: m.id, d: d, reason: p.Reason, waited: waited,
				queued: len(m.queue), policy: s.opts.Policy})
		}
		s.loading(m)
		return time.Time{}
	case errors.As(err, &be) && head.load != nil && head.load.Refuse:
		// It does not fit beside the busy models: the operator is told
		// so now, and whatever waits behind it is decided on its own.
		s.dropHead(m, err)
		if len(m.queue) > 0 {
			return s.start(m, now, may)
		}
		return time.Time{}
	case errors.As(err, &be) && may == stopNothing:
		return time.Time{} // its turn comes when those older are served
	case errors.As(err, &be):
		// It waits (max_wait, or the busy ones' idle grace) for a start
		// that will come unless its requests go first: the disk is idle
		// meanwhile, so its weight files are read into the page cache,
		// once per wait. The call only begins the read.
		if m.prefetch == nil {
			m.prefetch = s.b.Prefetch(m.id)
		}
		return s.busyUntil(m, be.Busy)
	case errors.Is(err, swapper.ErrMemoryInTransit), errors.Is(err, swapper.ErrLeaving):
		return time.Time{} // the loads or stops in the way end with evChanged
	default:
		// It cannot start (it never fits, it is backing off, hotswap is
		// closing): its requests are told why.
		s.refuse(m, err)
		return time.Time{}
	}
}

// busyUntil is when m may stop the busy models in its way without waiting
// any longer: when its oldest request has waited MaxWait, or when the last
// of them that is busy only by its idle grace goes idle, whichever comes
// first.
func (s *sched) busyUntil(m *mstate, busy []string) time.Time {
	at := m.queue[0].enqueued.Add(s.opts.MaxWait)
	var graceEnd time.Time
	for _, id := range busy {
		o, ok := s.models[id]
		if !ok || o.inflight > 0 || len(o.queue) > 0 {
			return at // really busy: only max_wait ends the wait
		}
		if end := o.lastDone.Add(s.opts.IdleGrace); end.After(graceEnd) {
			graceEnd = end
		}
	}
	if !graceEnd.IsZero() && graceEnd.Before(at) {
		return graceEnd
	}
	return at
}

// busyAt says which models have work at now: requests in flight or
// queued, or one released less than IdleGrace ago. Clients that send
// their next request as soon as the last is answered leave their model
// idle for a moment between requests; that moment is not a reason to
// swap it out.
func (s *sched) busyAt(now time.Time) func(string) bool {
	return func(id string) bool {
		o, ok := s.models[id]
		return ok && (o.inflight > 0 || len(o.queue) > 0 || now.Sub(o.lastDone) < s.opts.IdleGrace)
	}
}

// protecting is busy, with the protected models counted as busy too.
func protecting(busy func(string) bool, protect []string) func(string) bool {
	if len(protect) == 0 {
		return busy
	}
	return func(id string) bool { return slices.Contains(protect, id) || busy(id) }
}

// dropHead refuses the head of m's queue with err.
func (s *sched) dropHead(m *mstate, err error) {
	t := m.queue[0]
	n := copy(m.queue, m.queue[1:])
	m.queue[n] = nil
	m.queue = m.queue[:n]
	s.queued--
	t.queued = false
	m.publish()
	s.decide(t, err)
}

// loading marks m's queued requests as waiting for the load.
func (s *sched) loading(m *mstate) {
	for _, t := range m.queue {
		t.phase.store(Loading)
	}
}
