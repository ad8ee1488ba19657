package router

import (
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/swapper"
)

type evKind int

const (
	evArrive evKind = iota // a request joins its queue
	evCancel               // a queued request gave up
	evLoaded               // a request dispatched to a loading backend got it
	evDone                 // a dispatched request released its slot or failed
)

type event struct {
	kind evKind
	t    *Ticket
	err  error         // evCancel: why the request gave up
	held time.Duration // evDone after a lease: how long it was held
}

type phaseValue struct{ v atomic.Int32 }

func (p *phaseValue) load() Phase   { return Phase(p.v.Load()) }
func (p *phaseValue) store(x Phase) { p.v.Store(int32(x)) }

// sched is the router's state and its decisions. Only the holder of the
// router's lock touches it, and nothing in it blocks but the questions it
// asks the swapper, so it is tested by driving it directly with a fake
// Backends.
type sched struct {
	b      Backends
	opts   Options
	log    *zap.Logger
	models map[string]*mstate
	// swap is the swap in progress that drains busy models, if any: at
	// most one at a time, so that two swaps never drain each other.
	swap *swap
	// gen counts changes that make cached plans stale: loads done, swaps
	// settled, starts failed.
	gen int
	// waiting is waitingByAge's slice, reused: schedule runs for every
	// request and must not allocate on the fast path.
	waiting []*mstate
}

// planTTL bounds how long a cached plan is used for: memory changes the
// router does not see (a ttl unload, another program) are noticed within it.
const planTTL = 100 * time.Millisecond

// mstate is one model as the scheduler sees it.
type mstate struct {
	id       string
	parallel int
	queue    []*Ticket
	inflight int // dispatched and not done, loading included
	loading  int // dispatched to a backend that was not ready yet
	// drainedFor is the model whose start waits for this one's memory:
	// nothing new is dispatched here until that swap has happened.
	drainedFor string
	// hold is a moving average of how long a request holds the backend.
	hold  time.Duration
	stats *Stats
	// plan caches the swapper's answer to "what would starting this
	// stop", which costs a look at the machine's memory, for a model
	// that waits on busy ones: it is asked again on every event.
	plan plan
}

type plan struct {
	victims []string
	err     error
	at      time.Time
	gen     int
}

type swap struct {
	model   string
	victims []string
	began   time.Time
}

func newSched(b Backends, opts Options) *sched {
	s := &sched{b: b, opts: opts, log: zap.NewNop(), models: make(map[string]*mstate, len(opts.Parallel))}
	for id, n := range opts.Parallel {
		s.models[id] = &mstate{id: id, parallel: max(1, n), stats: &Stats{}}
	}
	return s
}

func (s *sched) handle(ev event) {
	t := ev.t
	m := s.models[t.model]
	switch ev.kind {
	case evArrive:
		if len(m.queue) >= s.opts.QueueSize {
			s.decide(t, false, &QueueFullError{Model: m.id, Size: len(m.queue), RetryAfter: m.retryAfter(len(m.queue))})
			return
		}
		t.queued = true
		m.queue = append(m.queue, t)
	case evCancel:
		if !t.queued {
			return // decided already; the owner hands a grant back
		}
		i := slices.Index(m.queue, t)
		m.queue = slices.Delete(m.queue, i, i+1)
		t.queued = false
		s.decide(t, false, ev.err)
	case evLoaded:
		if t.loading {
			t.loading = false
			m.loading--
			s.gen++
		}
	case evDone:
		if t.loading {
			t.loading = false
			m.loading--
			s.gen++
		}
		m.inflight--
		if ev.held > 0 {
			// A moving average over about the last eight requests.
			m.hold += (ev.held - m.hold) / 8
		}
	}
	m.publish()
}

// decide tells the ticket's owner: granted, or refused with err.
func (s *sched) decide(t *Ticket, granted bool, err error) {
	t.granted, t.err = granted, err
	t.signal <- struct{}{}
}

func (m *mstate) publish() {
	m.stats.Queued.Store(int64(len(m.queue)))
	m.stats.InFlight.Store(int64(m.inflight))
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
		for _, t := range m.queue {
			t.queued = false
			s.decide(t, false, err)
		}
		m.queue = nil
		m.publish()
	}
}

// schedule dispatches what may go now and returns when it next needs to
// look again without an event (zero: not before the next event).
func (s *sched) schedule(now time.Time) (wake time.Time) {
	s.settle(now)
	if s.opts.Policy == config.PolicyFIFO {
		return s.fifo(now)
	}
	return s.batch(now)
}

// batch serves loaded models as long as they have requests, queued or in
// flight, and swaps a model in over busy ones only once its oldest request
// has waited MaxWait; over idle ones, at once.
func (s *sched) batch(now time.Time) (wake time.Time) {
	for _, m := range s.waitingByAge() {
		if m.drainedFor != "" {
			continue
		}
		if ready, ok := s.dispatchable(m); ok {
			s.fill(m, ready)
			continue
		}
		if w := s.start(m, now); !w.IsZero() && (wake.IsZero() || w.Before(wake)) {
			wake = w
		}
	}
	return wake
}

// fifo serves requests strictly in arrival order: the oldest waiting
// request goes next, swapping its model in if it must, and nothing younger
// overtakes it.
func (s *sched) fifo(now time.Time) time.Time {
	for {
		var m *mstate
		for _, o := range s.models {
			if len(o.queue) > 0 && (m == nil || o.queue[0].enqueued.Before(m.queue[0].enqueued)) {
				m = o
			}
		}
		if m == nil || m.drainedFor != "" {
			return time.Time{}
		}
		if ready, ok := s.dispatchable(m); ok {
			if m.inflight >= m.parallel {
				return time.Time{}
			}
			s.grant(m, ready)
			continue
		}
		if wake := s.start(m, now); m.loading == 0 {
			return wake // not started: everything younger waits too
		}
	}
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

// dispatchable: the model is loaded or on its way, so its requests can go
// without a decision to swap. ready: its backend is ready now.
func (s *sched) dispatchable(m *mstate) (ready, ok bool) {
	st := s.b.State(m.id)
	return st == swapper.Ready, m.loading > 0 || st == swapper.Ready || st == swapper.Starting
}

// fill dispatches m's queue up to its parallel setting.
func (s *sched) fill(m *mstate, ready bool) {
	for len(m.queue) > 0 && m.inflight < m.parallel {
		s.grant(m, ready)
	}
}

// grant dispatches the head of m's queue; unless its backend is ready, the
// request counts as loading until it reports back.
func (s *sched) grant(m *mstate, ready bool) {
	t := m.queue[0]
	m.queue[0] = nil
	m.queue = m.queue[1:]
	t.queued = false
	m.inflight++
	if !ready {
		t.loading = true
		m.loading++
		t.phase.store(Loading)
	}
	m.publish()
	s.decide(t, true, nil)
}

// start decides whether m, which is not loaded, may be started now, and
// dispatches its queue if so. It returns when to look again if the policy
// makes m wait.
func (s *sched) start(m *mstate, now time.Time) (wake time.Time) {
	if s.unplaced(m) {
		// Another model was just dispatched and the swapper has not seen
		// it yet: any plan now would leave out what it takes.
		return now.Add(loadPoll)
	}
	victims, err := s.evictions(m, now)
	if errors.Is(err, swapper.ErrPlanPending) || (err != nil && s.othersLoading(m)) {
		// A load in progress cannot be stopped, so it may be what is in
		// the way: plan again once it is placed or done (its requests'
		// events bring us back; a start of the swapper's own has only the
		// poll).
		return now.Add(loadPoll)
	}
	if err != nil || len(victims) == 0 {
		// Nothing is in the way (or the start cannot happen at all, which
		// its requests are then told): no reason to wait.
		s.fill(m, false)
		return time.Time{}
	}
	busy := s.busy(victims)
	waited := now.Sub(m.queue[0].enqueued)
	reason := "the models in the way are idle"
	if len(busy) > 0 {
		if s.swap != nil {
			return time.Time{} // one draining swap at a time; settle wakes us
		}
		switch {
		case s.opts.Policy == config.PolicyFIFO:
			reason = "oldest request"
		case waited >= s.opts.MaxWait:
			reason = "waited max_wait"
		default:
			return m.queue[0].enqueued.Add(s.opts.MaxWait)
		}
	}
	if s.swap == nil {
		// The models in the way take nothing new from here on, so that the
		// swapper can stop them as soon as what they serve is done.
		s.swap = &swap{model: m.id, victims: victims, began: now}
		for _, v := range victims {
			if o, ok := s.models[v]; ok {
				o.drainedFor = m.id
			}
		}
	}
	s.log.Info("swapping in", zap.String("model", m.id), zap.Strings("evicting", victims),
		zap.Strings("busy", busy), zap.String("reason", reason), zap.Duration("waited", waited),
		zap.Int("queued", len(m.queue)), zap.String("policy", s.opts.Policy))
	s.fill(m, false)
	return time.Time{}
}

// evictions asks the swapper what starting m would stop, or reuses its
// recent answer.
func (s *sched) evictions(m *mstate, now time.Time) ([]string, error) {
	p := &m.plan
	if p.gen == s.gen && !p.at.IsZero() && now.Sub(p.at) < planTTL && now.Sub(p.at) >= 0 {
		return p.victims, p.err
	}
	victims, err := s.b.Evictions(m.id)
	if errors.Is(err, swapper.ErrPlanPending) {
		return nil, err // a moment's state: never reused
	}
	*p = plan{victims: victims, err: err, at: now, gen: s.gen}
	return victims, err
}

// loadPoll is how often a model waiting for another's load looks again.
const loadPoll = 100 * time.Millisecond

// unplaced: another model has requests dispatched to its load that the
// swapper has not been asked for yet.
func (s *sched) unplaced(m *mstate) bool {
	for _, o := range s.models {
		if o != m && o.loading > 0 && s.b.State(o.id) == swapper.Stopped {
			return true
		}
	}
	return false
}

func (s *sched) othersLoading(m *mstate) bool {
	for _, o := range s.models {
		if o != m && (o.loading > 0 || s.b.State(o.id) == swapper.Starting) {
			return true
		}
	}
	return false
}

// busy picks out the models the router has work for: in flight, queued or
// loading. Stopping those costs requests a wait; stopping others costs
// nothing.
func (s *sched) busy(models []string) []string {
	var out []string
	for _, id := range models {
		if o, ok := s.models[id]; ok && (o.inflight > 0 || len(o.queue) > 0) {
			out = append(out, id)
		}
	}
	return out
}

// settle ends the swap in progress once its model's dispatched requests
// have their backend (or have failed to get it): the drained models are
// then out of memory, or were not needed after all, and take requests (or
// wait for their own swap) again.
func (s *sched) settle(now time.Time) {
	if s.swap == nil || s.models[s.swap.model].loading > 0 {
		return
	}
	for _, v := range s.swap.victims {
		if o, ok := s.models[v]; ok {
			o.drainedFor = ""
		}
	}
	s.gen++
	s.log.Info("swap settled", zap.String("model", s.swap.model), zap.Strings("drained", s.swap.victims),
		zap.Duration("took", now.Sub(s.swap.began)))
	s.swap = nil
}
