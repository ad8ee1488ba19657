package router

import (
	"errors"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/swapper"
)

// fakeBackends answers the scheduler's questions from maps the test sets.
type fakeBackends struct {
	Backends // Acquire is never called by the scheduler
	states   map[string]swapper.State
	evict    map[string][]string
	evictErr error
	asked    int // calls of Evictions
}

func (f *fakeBackends) State(model string) swapper.State { return f.states[model] }
func (f *fakeBackends) Evictions(model string) ([]string, error) {
	f.asked++
	return f.evict[model], f.evictErr
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type harness struct {
	t *testing.T
	s *sched
	f *fakeBackends
}

func newHarness(t *testing.T, policy string, parallel map[string]int) *harness {
	f := &fakeBackends{states: map[string]swapper.State{}, evict: map[string][]string{}}
	s := newSched(f, Options{Parallel: parallel, Policy: policy, MaxWait: 10 * time.Second, QueueSize: 3})
	return &harness{t: t, s: s, f: f}
}

// arrive queues a request for model that arrived at t0+at and schedules.
func (h *harness) arrive(model string, at time.Duration) *Ticket {
	tk := &Ticket{model: model, enqueued: t0.Add(at), signal: make(chan struct{}, 1)}
	h.s.handle(event{kind: evArrive, t: tk})
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
	if got := h.decided(tk) && tk.granted; got != want {
		h.t.Fatalf("request for %s arriving at %s: granted = %v, want %v", tk.model, tk.enqueued.Sub(t0), got, want)
	}
}

func (h *harness) done(tk *Ticket, at time.Duration) time.Time {
	h.s.handle(event{kind: evDone, t: tk, held: time.Second})
	return h.s.schedule(t0.Add(at))
}

func TestSchedFastPathAndParallel(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 2})
	h.f.states["a"] = swapper.Ready
	r1, r2, r3 := h.arrive("a", 0), h.arrive("a", 0), h.arrive("a", 0)
	h.wantGranted(r1, true)
	h.wantGranted(r2, true)
	h.wantGranted(r3, false)
	if r1.loading {
		t.Fatal("a request for a ready backend counts as loading")
	}
	if got := h.s.models["a"].stats.InFlight.Load(); got != 2 {
		t.Fatalf("in flight = %d, want 2", got)
	}
	h.done(r1, time.Second)
	h.wantGranted(r3, true)
}

func TestSchedQueueFull(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1})
	h.f.states["a"] = swapper.Ready
	h.arrive("a", 0)
	for range 3 {
		h.arrive("a", 0)
	}
	r := h.arrive("a", 0)
	if !h.decided(r) || r.granted {
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
	h.s.handle(event{kind: evCancel, t: gone, err: errors.New("client left")})
	if !h.decided(gone) || gone.granted || gone.err == nil {
		t.Fatal("a cancelled request was not answered with its error")
	}
	if n := len(h.s.models["a"].queue); n != 1 {
		t.Fatalf("queue holds %d after the cancel, want 1", n)
	}
	h.decided(first)
	h.done(first, time.Second)
	h.wantGranted(later, true)
}

// Under batch, a model that needs a busy one's memory waits MaxWait while
// the busy one has requests queued, then drains it.
func TestSchedBatchWaitsMaxWaitThenDrains(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["b"] = []string{"a"}
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	a2 := h.arrive("a", 0)
	b1 := h.arrive("b", time.Second)
	h.wantGranted(b1, false)
	a3 := h.arrive("a", 2*time.Second)
	wake := h.done(a1, 3*time.Second)
	h.wantGranted(a2, true) // a keeps being served
	if want := t0.Add(11 * time.Second); !wake.Equal(want) {
		t.Fatalf("wake = %s, want b's max_wait at %s", wake.Sub(t0), want.Sub(t0))
	}
	h.s.schedule(wake)
	h.wantGranted(b1, true)
	if !b1.loading || h.s.models["a"].drainedFor != "b" {
		t.Fatal("b was started without draining a")
	}
	h.done(a2, 12*time.Second)
	h.wantGranted(a3, false) // a is drained: a3 waits for it to come back
	h.f.states["a"], h.f.states["b"] = swapper.Stopped, swapper.Ready
	h.s.handle(event{kind: evLoaded, t: b1})
	h.s.schedule(t0.Add(13 * time.Second))
	if h.s.swap != nil || h.s.models["a"].drainedFor != "" {
		t.Fatal("the swap did not settle once b was loaded")
	}
	// a3 has waited 10s by 12s: a comes back over b at once.
	h.wantGranted(a3, true)
}

// Under batch, a model in the way is swapped out without waiting for
// MaxWait once it is idle: nothing queued and nothing in flight.
func TestSchedBatchSwapsOnceTheOtherIsIdle(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["b"] = []string{"a"}
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	b1 := h.arrive("b", time.Second)
	h.wantGranted(b1, false) // a is still answering a1
	h.done(a1, 2*time.Second)
	h.wantGranted(b1, true)
	if h.s.models["a"].drainedFor != "b" {
		t.Fatal("a was not held back from new requests while b loads")
	}
	a2 := h.arrive("a", 3*time.Second)
	h.wantGranted(a2, false)
}

func TestSchedStartsWithoutWaitWhenNothingBusyIsInTheWay(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1, "c": 1})
	h.f.states["a"], h.f.states["c"] = swapper.Ready, swapper.Ready
	h.f.evict["b"] = []string{"c"} // idle: stopping it delays nobody
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	a2 := h.arrive("a", 0)
	b1 := h.arrive("b", 0)
	h.wantGranted(b1, true)
	if h.s.models["c"].drainedFor != "b" || h.s.models["a"].drainedFor != "" {
		t.Fatal("want c, which b evicts, held back and a, which it does not, served")
	}
	h.done(a1, time.Second)
	h.wantGranted(a2, true)
}

func TestSchedOneDrainingSwapAtATime(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1, "c": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["b"], h.f.evict["c"] = []string{"a"}, []string{"a", "b"}
	h.wantGranted(h.arrive("a", 0), true)
	b1 := h.arrive("b", 0)
	h.s.schedule(t0.Add(time.Minute))
	h.wantGranted(b1, true) // swap: a drains
	c1 := h.arrive("c", 0)
	h.s.schedule(t0.Add(time.Hour))
	h.wantGranted(c1, false)
}

func TestSchedFIFOSwapsForTheOldest(t *testing.T) {
	h := newHarness(t, config.PolicyFIFO, map[string]int{"a": 2, "b": 2, "c": 1})
	h.f.states["a"], h.f.states["c"] = swapper.Ready, swapper.Ready
	h.f.evict["b"] = []string{"a"}
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	b1 := h.arrive("b", time.Second)
	h.wantGranted(b1, true) // the oldest waiting: swapped in at once
	a2 := h.arrive("a", 2*time.Second)
	h.wantGranted(a2, false)
	c1 := h.arrive("c", 3*time.Second)
	h.wantGranted(c1, false) // nothing overtakes a2
	h.done(a1, 4*time.Second)
	h.f.states["a"], h.f.states["b"] = swapper.Stopped, swapper.Ready
	h.s.handle(event{kind: evLoaded, t: b1})
	h.f.evict["a"] = []string{"b"}
	h.s.schedule(t0.Add(5 * time.Second))
	h.wantGranted(a2, true) // and back again: fifo thrashes
	if h.s.swap == nil || h.s.swap.model != "a" {
		t.Fatal("a was not swapped back in over b")
	}
}

func TestSchedEvictionErrorIsTold(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1})
	h.f.evictErr = errors.New("does not fit")
	h.wantGranted(h.arrive("a", 0), true) // the swapper tells the request why
}

// While a load is in progress, a model that does not fit beside it waits
// for it instead of being refused.
func TestSchedWaitsForALoadInTheWay(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1})
	a1 := h.arrive("a", 0)
	h.wantGranted(a1, true)
	h.f.states["a"] = swapper.Starting
	h.f.evictErr = errors.New("does not fit")
	b1 := h.arrive("b", 0)
	h.wantGranted(b1, false)
	h.f.states["a"], h.f.evictErr, h.f.evict["b"] = swapper.Ready, nil, []string{"a"}
	h.s.handle(event{kind: evLoaded, t: a1})
	h.s.schedule(t0.Add(time.Second))
	h.wantGranted(b1, false) // loaded, a serves a1: b waits its turn
	h.done(a1, 2*time.Second)
	h.wantGranted(b1, true)
}

// A model waiting on busy ones is planned for once per planTTL, not on
// every event: each plan is a look at the machine's memory.
func TestSchedPlansAreReusedBriefly(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "b": 1})
	h.s.opts.QueueSize = 100
	h.f.states["a"] = swapper.Ready
	h.f.evict["b"] = []string{"a"}
	h.decided(h.arrive("a", 0))
	h.arrive("b", 0)
	for i := range 20 {
		h.arrive("a", time.Duration(i)*time.Millisecond)
	}
	if h.f.asked != 1 {
		t.Fatalf("%d plans within %s, want 1", h.f.asked, planTTL)
	}
	h.arrive("a", planTTL)
	if h.f.asked != 2 {
		t.Fatalf("%d plans after %s, want 2", h.f.asked, planTTL)
	}
}

// A start the swapper has yet to place is looked at again soon, under
// either policy, though no request event may come.
func TestSchedPollsWhileAStartIsUnplaced(t *testing.T) {
	for _, policy := range []string{config.PolicyBatch, config.PolicyFIFO} {
		h := newHarness(t, policy, map[string]int{"a": 1})
		h.f.evictErr = swapper.ErrPlanPending
		a1 := h.arrive("a", 0)
		h.wantGranted(a1, false)
		if wake := h.s.schedule(t0); !wake.Equal(t0.Add(loadPoll)) {
			t.Errorf("%s: wake at %s, want %s", policy, wake.Sub(t0), loadPoll)
		}
		h.f.evictErr = nil
		h.s.schedule(t0.Add(loadPoll))
		h.wantGranted(a1, true)
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
