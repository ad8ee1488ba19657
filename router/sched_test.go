package router

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/swapper"
)

// fakeBackends is a swapper the test scripts: states, what a start of a
// model evicts, and errors. Its starts are recorded, and it applies the
// policy the way the swapper does: busy victims need EvictBusy.
type fakeBackends struct {
	noIntents
	states   map[string]swapper.State
	evict    map[string][]string
	startErr error
	// errs are start errors for one model, before startErr.
	errs    map[string]error
	started []string // models Start began, in order
	// prefetched and prefetchStopped are the models whose prefetch
	// began and was stopped, in order.
	prefetched, prefetchStopped []string
}

// noIntents is a Backends' operator side, for fakes of the request path.
type noIntents struct{}

func (noIntents) Unload(context.Context, string, bool) error             { return nil }
func (noIntents) Reconfigure(map[string]*config.Model, swapper.Settings) {}
func (noIntents) Remove(context.Context, string) error                   { return nil }

func (f *fakeBackends) TryLease(model string, _ *swapper.Lease) bool {
	return f.states[model] == swapper.Ready
}

func (f *fakeBackends) State(model string) swapper.State { return f.states[model] }
func (f *fakeBackends) Watch(func(string))               {}

func (f *fakeBackends) Prefetch(model string) func() {
	f.prefetched = append(f.prefetched, model)
	return func() { f.prefetchStopped = append(f.prefetchStopped, model) }
}

func (f *fakeBackends) Start(model string, p swapper.Policy) (swapper.Decision, error) {
	if err := f.errs[model]; err != nil {
		return swapper.Decision{}, err
	}
	if f.startErr != nil {
		return swapper.Decision{}, f.startErr
	}
	d := swapper.Decision{Started: true, Victims: f.evict[model]}
	for _, v := range d.Victims {
		if p.Busy != nil && p.Busy(v) {
			d.Busy = append(d.Busy, v)
		}
	}
	if len(d.Busy) > 0 && !p.EvictBusy {
		return swapper.Decision{}, &swapper.BusyError{Model: model, Victims: d.Victims, Busy: d.Busy}
	}
	for _, v := range d.Victims {
		f.states[v] = swapper.Draining
	}
	f.states[model] = swapper.Starting
	f.started = append(f.started, model)
	return d, nil
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type harness struct {
	t *testing.T
	s *sched
	f *fakeBackends
}

func newHarness(t *testing.T, policy string, parallel map[string]int) *harness {
	f := &fakeBackends{states: map[string]swapper.State{}, evict: map[string][]string{}, errs: map[string]error{}}
	s := newSched(f, Options{Parallel: parallel, Policy: policy, MaxWait: 10 * time.Second,
		IdleGrace: time.Second, QueueSize: 3})
	return &harness{t: t, s: s, f: f}
}

// arrive queues a request for model that arrived at t0+at and schedules.
func (h *harness) arrive(model string, at time.Duration) *Ticket {
	tk := &Ticket{model: model, enqueued: t0.Add(at), signal: make(chan struct{}, 1)}
	h.s.handle(event{kind: evArrive, t: tk}, t0.Add(at))
	h.s.schedule(t0.Add(at))
	return tk
}

// decided reports whether sched has answered tk, consuming the answer.
func (h *harness) decided(tk *Ticket) bool {
	select {
	case <-tk.signal:
		return true
	default:
		return false
	}
}

func (h *harness) wantGranted(tk *Ticket, want bool) {
	h.t.Helper()
	if got := h.decided(tk) && tk.err == nil; got != want {
		h.t.Fatalf("request for %s arriving at %s: granted = %v, want %v", tk.model, tk.enqueued.Sub(t0), got, want)
	}
}

// done releases tk's lease at t0+at, and schedules.
func (h *harness) done(tk *Ticket, at time.Duration) time.Time {
	h.s.handle(event{kind: evDone, t: tk, held: time.Second}, t0.Add(at))
	return h.s.schedule(t0.Add(at))
}

// changed is the swapper saying something changed, at t0+at.
func (h *harness) changed(at time.Duration) time.Time {
	h.s.handle(event{kind: evChanged}, t0.Add(at))
	return h.s.schedule(t0.Add(at))
}

func TestSchedFastPathAndParallel(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 2})
	h.f.states["a"] = swapper.Ready
	r1, r2, r3 := h.arrive("a", 0), h.arrive("a", 0), h.arrive("a", 0)
	h.wantGranted(r1, true)
	h.wantGranted(r2, true)
	h.wantGranted(r3, false)
	if got := h.s.models["a"].stats.InFlight.Load(); got != 2 {
		t.Fatalf("in flight = %d, want 2", got)
	}
	h.done(r1, time.Second)
	h.wantGranted(r3, true)
	if len(h.f.started) != 0 {
		t.Errorf("starts %v for a ready model", h.f.started)
	}
}

func TestSchedQueueFull(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1})
	h.f.states["a"] = swapper.Ready
	h.arrive("a", 0)
	for range 3 {
		h.arrive("a", 0)
	}
	r := h.arrive("a", 0)
	if !h.decided(r) || r.err == nil {
		t.Fatal("a request beyond the queue size was not refused")
	}
	var qf *QueueFullError
	if !errors.As(r.err, &qf) || qf.Size != 3 || qf.RetryAfter < time.Second {
		t.Fatalf("refusal = %#v, want a QueueFullError for 3 with a Retry-After", r.err)
	}
}

func TestSchedCancelFreesThePlace(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1})
	h.f.states["a"] = swapper.Ready
	first := h.arrive("a", 0)
	gone := h.arrive("a", 0)
	later := h.arrive("a", 0)
	h.s.handle(event{kind: evCancel, t: gone, err: errors.New("client left")}, t0)
	if !h.decided(gone) || gone.err == nil {
		t.Fatal("a cancelled request was not answered with its error")
	}
	if n := len(h.s.models["a"].queue); n != 1 {
		t.Fatalf("queue holds %d after the cancel, want 1", n)
	}
	h.decided(first)
	h.done(first, time.Second)
	h.wantGranted(later, true)
}

// A model that is loading gets its requests as soon as the swapper says it
// is ready; meanwhile they are marked as waiting for the load.
func TestSchedServesALoadedModelOnChange(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 2})
	r1, r2 := h.arrive("a", 0), h.arrive("a", 0)
	if len(h.f.started) != 1 || h.f.states["a"] != swapper.Starting {
		t.Fatalf("starts %v, state %v", h.f.started, h.f.states["a"])
	}
	h.wantGranted(r1, false)
	if r1.Phase() != Loading || r2.Phase() != Loading {
		t.Error("requests for a loading model are not marked loading")
	}
	h.arrive("a", time.Second) // joins the load: no second start
	h.f.states["a"] = swapper.Ready
	h.changed(2 * time.Second)
	h.wantGranted(r1, true)
	h.wantGranted(r2, true)
	if len(h.f.started) != 1 {
		t.Errorf("starts %v", h.f.started)
	}
}

// Under batch, a model that needs a busy one's memory waits MaxWait, then
// starts over it.
func TestSchedBatchWaitsMaxWaitThenEvictsBusy(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["b"] = []string{"a"}
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	a2 := h.arrive("a", 0)
	b1 := h.arrive("b", time.Second)
	h.wantGranted(b1, false)
	if len(h.f.started) != 0 {
		t.Fatal("b started over a busy a at once")
	}
	wake := h.done(a1, 3*time.Second)
	h.wantGranted(a2, true) // a keeps being served
	if want := t0.Add(11 * time.Second); !wake.Equal(want) {
		t.Fatalf("wake = %s, want b's max_wait at %s", wake.Sub(t0), want.Sub(t0))
	}
	h.s.schedule(wake)
	if len(h.f.started) != 1 || h.f.states["a"] != swapper.Draining {
		t.Fatalf("at max_wait: starts %v, a %v", h.f.started, h.f.states["a"])
	}
	a3 := h.arrive("a", 12*time.Second)
	h.wantGranted(a3, false) // a is leaving: a3 waits for it to come back
	h.f.states["a"], h.f.states["b"] = swapper.Stopped, swapper.Ready
	h.changed(13 * time.Second)
	h.wantGranted(b1, true)
}

// Under batch, a request left waiting for max_wait, its start being one
// that would stop a busy model, has its model's weight files read ahead
// meanwhile (Prefetch): once per wait, whatever else is decided during it.
// The read is stopped when the queue empties without a start (its requests
// gone), and a new wait begins another. At max_wait the start is decided,
// and the swapper's own read-ahead takes over: the router lets go of the
// prefetch, and a request served later stops nothing more.
func TestSchedPrefetchWhileWaitingMaxWait(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 2})
	h.f.states["a"] = swapper.Ready
	h.f.evict["b"] = []string{"a"}
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	want := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}

	b1 := h.arrive("b", time.Second)
	want("prefetches once b waits for max_wait", h.f.prefetched, []string{"b"})
	b2 := h.arrive("b", 2*time.Second)
	h.changed(3 * time.Second)
	h.done(a1, 4*time.Second)
	want("prefetches during the same wait", h.f.prefetched, []string{"b"})
	want("stopped while b1 waits", h.f.prefetchStopped, nil)
	h.s.handle(event{kind: evCancel, t: b1, err: errors.New("client left")}, t0.Add(5*time.Second))
	want("stopped while b2 waits", h.f.prefetchStopped, nil)
	h.s.handle(event{kind: evCancel, t: b2, err: errors.New("client left")}, t0.Add(6*time.Second))
	want("stopped once b's queue emptied", h.f.prefetchStopped, []string{"b"})

	// a busy again; a new wait for b reads again, until its start.
	a2 := h.arrive("a", 7*time.Second)
	h.wantGranted(a2, true)
	b3 := h.arrive("b", 8*time.Second)
	want("prefetches for a new wait", h.f.prefetched, []string{"b", "b"})
	wake := h.changed(9 * time.Second)
	if at := t0.Add(18 * time.Second); !wake.Equal(at) {
		t.Fatalf("wake = %s, want b3's max_wait at %s", wake.Sub(t0), at.Sub(t0))
	}
	h.s.schedule(wake)
	want("starts at max_wait", h.f.started, []string{"b"})
	want("let go of once the start is decided", h.f.prefetchStopped, []string{"b", "b"})
	h.f.states["a"], h.f.states["b"] = swapper.Stopped, swapper.Ready
	h.changed(19 * time.Second)
	h.wantGranted(b3, true)
	want("prefetches in all", h.f.prefetched, []string{"b", "b"})
	want("stops in all", h.f.prefetchStopped, []string{"b", "b"})
	if len(h.f.started) != 1 {
		t.Fatalf("starts %v", h.f.started)
	}
}

// Nothing is read ahead where no request waits for a start that will
// follow: a start decided at once (over an idle model, or under fifo,
// whose starts wait only in the swapper, which reads ahead itself), a
// model that cannot fit, or a load that is refused rather than wait.
func TestSchedNoPrefetchWithoutAWait(t *testing.T) {
	for _, policy := range []string{config.PolicyBatch, config.PolicyFIFO} {
		h := newHarness(t, policy, map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "huge": 1})
		h.f.states["a"], h.f.states["c"] = swapper.Ready, swapper.Ready
		h.f.evict["b"] = []string{"c"} // idle
		h.f.evict["d"] = []string{"a"} // busy
		h.f.errs["huge"] = &swapper.InsufficientMemoryError{Model: "huge", Device: "ram"}
		h.wantGranted(h.arrive("a", 0), true)
		h.arrive("b", 0)
		h.arrive("huge", 0)
		d1 := &Ticket{model: "d", enqueued: t0, signal: make(chan struct{}, 1), load: &LoadOptions{Refuse: true}}
		h.s.handle(event{kind: evArrive, t: d1}, t0)
		h.s.schedule(t0)
		if !h.decided(d1) || d1.err == nil {
			t.Fatalf("%s: a load that would stop a busy model was not refused", policy)
		}
		if len(h.f.prefetched) != 0 {
			t.Errorf("%s: prefetches %v", policy, h.f.prefetched)
		}
	}
}

// A model busy only by its idle grace holds another's start back until the
// grace ends, not until MaxWait; one idle longer is swapped out at once.
func TestSchedIdleGrace(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["b"] = []string{"a"}
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	h.done(a1, 100*time.Millisecond)
	b1 := h.arrive("b", 200*time.Millisecond)
	if len(h.f.started) != 0 {
		t.Fatal("a was swapped out a moment after it served")
	}
	wake := h.s.schedule(t0.Add(200 * time.Millisecond))
	if want := t0.Add(1100 * time.Millisecond); !wake.Equal(want) {
		t.Fatalf("wake = %s, want the end of a's grace at %s", wake.Sub(t0), want.Sub(t0))
	}
	// a is asked for again within its grace: still busy.
	a2 := h.arrive("a", 900*time.Millisecond)
	h.wantGranted(a2, true)
	h.done(a2, time.Second)
	h.s.schedule(t0.Add(1100 * time.Millisecond))
	if len(h.f.started) != 0 {
		t.Fatal("a lost its turn within the grace of its last request")
	}
	h.s.schedule(t0.Add(2001 * time.Millisecond))
	if len(h.f.started) != 1 || h.f.started[0] != "b" {
		t.Fatalf("b did not start once a was idle past its grace: %v", h.f.started)
	}
	h.wantGranted(b1, false) // loading
}

func TestSchedStartsAtOnceOverIdle(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1, "c": 1})
	h.f.states["a"], h.f.states["c"] = swapper.Ready, swapper.Ready
	h.f.evict["b"] = []string{"c"} // idle: stopping it delays nobody
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	h.arrive("b", 0)
	if len(h.f.started) != 1 || h.f.states["c"] != swapper.Draining || h.f.states["a"] != swapper.Ready {
		t.Fatalf("starts %v, a %v, c %v", h.f.started, h.f.states["a"], h.f.states["c"])
	}
}

func TestSchedFIFOSwapsForTheOldest(t *testing.T) {
	h := newHarness(t, config.PolicyFIFO, map[string]int{"a": 2, "b": 2, "c": 1})
	h.f.states["a"], h.f.states["c"] = swapper.Ready, swapper.Ready
	h.f.evict["b"] = []string{"a"}
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	b1 := h.arrive("b", time.Second)
	if len(h.f.started) != 1 || h.f.started[0] != "b" {
		t.Fatalf("the oldest waiting was not swapped in at once: %v", h.f.started)
	}
	a2 := h.arrive("a", 2*time.Second)
	h.wantGranted(a2, false) // a is leaving; bringing it back would stop b, so a2 waits for b1
	if len(h.f.started) != 1 {
		t.Fatalf("a2 overtook b1: starts %v", h.f.started)
	}
	c1 := h.arrive("c", 3*time.Second)
	h.wantGranted(c1, true) // c is ready and in nobody's way: it takes nothing from b1
	h.f.states["a"], h.f.states["b"] = swapper.Stopped, swapper.Ready
	h.f.evict["a"] = []string{"b"}
	h.changed(4 * time.Second)
	h.wantGranted(b1, true)
	if len(h.f.started) != 2 || h.f.started[1] != "a" {
		t.Fatalf("a was not swapped back in over b: %v", h.f.started) // fifo thrashes
	}
}

// TestSchedStartThatFitsGoesAtOnce is issue 26's case: a serves a long
// request, b does not fit beside a, c fits beside either. fifo decides b's
// start at once (it waits for a's drain); batch keeps b waiting for
// max_wait. Under both, c, asked for while b waits, starts at once and is
// served as soon as it is ready, a's long request still in flight: a start
// that stops nothing takes memory from no one.
func TestSchedStartThatFitsGoesAtOnce(t *testing.T) {
	for _, c := range []struct {
		policy string
		before []string // the starts decided before c is asked for
	}{
		{config.PolicyFIFO, []string{"b"}},
		{config.PolicyBatch, nil},
	} {
		t.Run(c.policy, func(t *testing.T) {
			h := newHarness(t, c.policy, map[string]int{"a": 1, "b": 1, "c": 1})
			h.f.states["a"] = swapper.Ready
			h.f.evict["b"] = []string{"a"}
			a1 := h.arrive("a", 0)
			h.wantGranted(a1, true) // the long request
			b1 := h.arrive("b", time.Second)
			if !slices.Equal(h.f.started, c.before) {
				t.Fatalf("starts %v when b was asked for, want %v", h.f.started, c.before)
			}
			c1 := h.arrive("c", 1500*time.Millisecond)
			if want := append(slices.Clone(c.before), "c"); !slices.Equal(h.f.started, want) {
				t.Fatalf("starts %v when c was asked for, want %v: c waits behind b", h.f.started, want)
			}
			if c1.Phase() != Loading {
				t.Error("c's request is not marked loading")
			}
			h.f.states["c"] = swapper.Ready
			h.changed(2 * time.Second)
			h.wantGranted(c1, true)
			h.wantGranted(b1, false)
			if n := h.s.models["a"].inflight; n != 1 {
				t.Fatalf("a has %d in flight, want its long request", n)
			}
		})
	}
}

// Under fifo, a younger request whose model would stop anything, even an
// idle model, waits until the older ones are served; one that stops
// nothing does not.
func TestSchedFIFONothingThatStopsOvertakes(t *testing.T) {
	h := newHarness(t, config.PolicyFIFO, map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1})
	h.f.states["a"], h.f.states["e"] = swapper.Ready, swapper.Ready
	h.f.evict["b"] = []string{"a"}
	h.f.evict["d"] = []string{"e"} // e is idle
	h.wantGranted(h.arrive("a", 0), true)
	b1 := h.arrive("b", time.Second)
	d1 := h.arrive("d", 2*time.Second)
	c1 := h.arrive("c", 3*time.Second)
	if want := []string{"b", "c"}; !slices.Equal(h.f.started, want) {
		t.Fatalf("starts %v, want %v: d would stop e, so it waits for b1", h.f.started, want)
	}
	if h.f.states["e"] != swapper.Ready {
		t.Fatalf("e is %v", h.f.states["e"])
	}
	h.f.states["a"], h.f.states["b"], h.f.states["c"] = swapper.Stopped, swapper.Ready, swapper.Ready
	h.changed(4 * time.Second)
	h.wantGranted(b1, true)
	h.wantGranted(c1, true)
	h.wantGranted(d1, false) // loading, now that it is the oldest
	if want := []string{"b", "c", "d"}; !slices.Equal(h.f.started, want) {
		t.Fatalf("starts %v once b1 was served, want %v", h.f.started, want)
	}
}

// Under fifo, while the oldest request's start waits for memory held by
// loads or stops in progress, the memory that frees is its own: nothing
// younger starts, nor is served, before its start is decided.
func TestSchedFIFOHeadWaitingForMemoryHoldsTheRest(t *testing.T) {
	h := newHarness(t, config.PolicyFIFO, map[string]int{"b": 1, "c": 1, "e": 1})
	h.f.states["e"] = swapper.Ready
	h.f.errs["b"] = swapper.ErrMemoryInTransit
	b1 := h.arrive("b", 0)
	c1 := h.arrive("c", time.Second)
	e1 := h.arrive("e", 2*time.Second)
	if len(h.f.started) != 0 {
		t.Fatalf("starts %v while the oldest waits for memory", h.f.started)
	}
	h.wantGranted(e1, false)
	delete(h.f.errs, "b")
	h.changed(3 * time.Second)
	if want := []string{"b", "c"}; !slices.Equal(h.f.started, want) {
		t.Fatalf("starts %v once b's start could be decided, want %v", h.f.started, want)
	}
	h.wantGranted(e1, true)
	h.wantGranted(b1, false)
	h.wantGranted(c1, false)
}

// Under fifo, when the oldest request's model is refused, the next oldest
// is decided in the same pass, not at some later event.
func TestSchedFIFORefusedHeadPassesTheTurn(t *testing.T) {
	h := newHarness(t, config.PolicyFIFO, map[string]int{"a": 1, "b": 1, "d": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["d"] = []string{"a"}
	h.wantGranted(h.arrive("a", 0), true)
	h.f.errs["b"] = swapper.ErrMemoryInTransit
	b1 := h.arrive("b", time.Second)
	h.arrive("d", 2*time.Second)
	if len(h.f.started) != 0 {
		t.Fatalf("starts %v while the oldest waits for memory", h.f.started)
	}
	h.f.errs["b"] = &swapper.InsufficientMemoryError{Model: "b", Device: "ram"}
	h.changed(3 * time.Second)
	if !h.decided(b1) || b1.err == nil {
		t.Fatal("b's request was not refused")
	}
	if want := []string{"d"}; !slices.Equal(h.f.started, want) {
		t.Fatalf("starts %v after b was refused, want %v", h.f.started, want)
	}
}

func TestSchedStartErrorsAreTold(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1})
	h.f.startErr = &swapper.InsufficientMemoryError{Model: "a", Device: "ram"}
	r1, r2 := h.arrive("a", 0), h.arrive("a", 0)
	for _, r := range []*Ticket{r1, r2} {
		var ie *swapper.InsufficientMemoryError
		if !h.decided(r) || !errors.As(r.err, &ie) {
			t.Errorf("refusal %v", r.err)
		}
	}
}

// Memory held by loads and stops in progress makes a model wait, not fail;
// it is decided again when the swapper says something changed.
func TestSchedWaitsForMemoryInTransit(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1})
	h.f.startErr = swapper.ErrMemoryInTransit
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, false)
	h.f.startErr = nil
	h.changed(time.Second)
	if len(h.f.started) != 1 {
		t.Fatal("not decided again on a change")
	}
}

func TestSchedRefuseAll(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1})
	h.f.states["a"] = swapper.Ready
	h.decided(h.arrive("a", 0))
	r := h.arrive("a", 0)
	h.s.refuseAll(swapper.ErrClosed)
	if !h.decided(r) || !errors.Is(r.err, swapper.ErrClosed) {
		t.Fatal("a queued request was not refused at close")
	}
}

// oneAtATime is a machine that holds one of its models at a time, for a
// simulation on the scheduler's own clock: a start evicts whatever model
// is in, by the swapper's rule (a busy one only with EvictBusy), waits
// for its requests to finish, and loads in loadTime.
type oneAtATime struct {
	noIntents
	states   map[string]swapper.State
	inflight map[string]int
	readyAt  time.Time // of the model starting
	loading  string
	starts   int
}

const loadTime = 50 * time.Millisecond

func (m *oneAtATime) TryLease(model string, _ *swapper.Lease) bool {
	if m.states[model] != swapper.Ready {
		return false
	}
	m.inflight[model]++
	return true
}

func (m *oneAtATime) State(model string) swapper.State { return m.states[model] }
func (m *oneAtATime) Watch(func(string))               {}
func (m *oneAtATime) Prefetch(string) func()           { return func() {} }

func (m *oneAtATime) Start(model string, p swapper.Policy) (swapper.Decision, error) {
	if m.loading != "" {
		return swapper.Decision{}, swapper.ErrMemoryInTransit
	}
	var d swapper.Decision
	for id, st := range m.states {
		if id != model && st != swapper.Stopped {
			d.Victims = append(d.Victims, id)
			if m.inflight[id] > 0 || p.Busy(id) {
				d.Busy = append(d.Busy, id)
			}
		}
	}
	if len(d.Busy) > 0 && !p.EvictBusy {
		return swapper.Decision{}, &swapper.BusyError{Model: model, Victims: d.Victims, Busy: d.Busy}
	}
	for _, v := range d.Victims {
		m.states[v] = swapper.Draining
	}
	d.Started = true
	m.states[model] = swapper.Starting
	m.loading = model
	m.starts++
	return d, nil
}

// advance settles the machine at now: drained victims stop, and the load
// ends loadTime after the last of them.
func (m *oneAtATime) advance(now time.Time) {
	if m.loading == "" {
		return
	}
	for id, st := range m.states {
		if st == swapper.Draining && m.inflight[id] == 0 {
			m.states[id] = swapper.Stopped
			m.readyAt = now.Add(loadTime)
		}
		if st == swapper.Draining {
			return
		}
	}
	if m.readyAt.IsZero() {
		m.readyAt = now.Add(loadTime)
	}
	if !now.Before(m.readyAt) {
		m.states[m.loading] = swapper.Ready
		m.loading, m.readyAt = "", time.Time{}
	}
}

// simulateInStep runs 8 clients, 4 on each of two models that do not fit
// together, each sending its next request a millisecond after its last is
// answered (each takes 10ms), 30 requests each, and returns the backend
// starts.
func simulateInStep(t *testing.T, idleGrace time.Duration) int {
	m := &oneAtATime{states: map[string]swapper.State{"a": swapper.Stopped, "b": swapper.Stopped},
		inflight: map[string]int{}}
	s := newSched(m, Options{Parallel: map[string]int{"a": 4, "b": 4}, Policy: config.PolicyBatch,
		MaxWait: 3 * time.Second, IdleGrace: idleGrace, QueueSize: 16})
	type client struct {
		model string
		left  int
		t     *Ticket
		until time.Time // when its request is answered
		next  time.Time // when it sends the next (a client takes a moment)
	}
	var clients []*client
	now := t0
	send := func(c *client) {
		c.t = &Ticket{model: c.model, enqueued: now, signal: make(chan struct{}, 1)}
		c.left--
		s.handle(event{kind: evArrive, t: c.t}, now)
	}
	for i := range 8 {
		c := &client{model: []string{"a", "b"}[i%2], left: 30}
		clients = append(clients, c)
		send(c)
	}
	const step = time.Millisecond
	for deadline := now.Add(10 * time.Minute); now.Before(deadline); now = now.Add(step) {
		m.advance(now)
		s.handle(event{kind: evChanged}, now)
		s.schedule(now)
		busy := false
		for _, c := range clients {
			switch {
			case c.t == nil && c.left > 0:
				if !now.Before(c.next) {
					send(c)
				}
				busy = true
			case c.t == nil:
			case c.until.IsZero():
				select {
				case <-c.t.signal:
					if c.t.err != nil {
						t.Fatalf("refused: %v", c.t.err)
					}
					c.until = now.Add(10 * time.Millisecond)
				default:
				}
				busy = true
			case !now.Before(c.until):
				m.inflight[c.model]--
				s.handle(event{kind: evDone, t: c.t, held: 10 * time.Millisecond}, now)
				c.t, c.until, c.next = nil, time.Time{}, now.Add(step)
				busy = true
			default:
				busy = true
			}
		}
		if !busy {
			return m.starts
		}
	}
	t.Fatal("the simulation did not finish")
	return 0
}

// TestSchedInStepClients: clients in step leave their model idle for a
// moment between rounds; with an idle grace that moment is not taken for
// idleness, and the two models take few turns; without it, batch flaps.
func TestSchedInStepClients(t *testing.T) {
	with := simulateInStep(t, 100*time.Millisecond)
	without := simulateInStep(t, 0)
	t.Logf("starts: %d with an idle grace of 100ms, %d without", with, without)
	if with > 3 {
		t.Errorf("%d starts with the idle grace, want at most 3", with)
	}
	if without <= with {
		t.Errorf("%d starts without the grace, %d with: the simulation does not show the flapping", without, with)
	}
}
