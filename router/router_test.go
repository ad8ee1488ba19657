package router_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// twoModels are a and b, of which memory holds only one (see newRig).
const twoModels = `
ports: 24000-24999
health_timeout: 10s
stop_timeout: 2s
models:
  a:
    cmd: MOCK -port ${PORT} -model a -latency 20ms -progress-interval 0
    parallel: 2
    memory: {ram: 6GiB}
  b:
    cmd: MOCK -port ${PORT} -model b -latency 20ms -progress-interval 0
    parallel: 2
    memory: {ram: 6GiB}
  c:
    cmd: MOCK -port ${PORT} -model c -progress-interval 0
    parallel: 1
`

type rig struct {
	r      *router.Router
	sw     *swapper.Swapper
	starts *mocktest.Starter
	cfg    *config.Config
}

// reconfigure reloads opts, and for the swapper the models opts names.
func (g *rig) reconfigure(opts router.Options) map[string]<-chan struct{} {
	models := map[string]*config.Model{}
	for id := range opts.Parallel {
		models[id] = g.cfg.Models[id]
	}
	return g.r.Reconfigure(opts, models, swapper.Settings{})
}

// newRig runs the router over a real swapper and mock backends. Memory is
// scripted: a and b use 6GiB each of 10GiB, so one evicts the other; c
// uses nothing.
func newRig(t *testing.T, edit func(*router.Options)) *rig {
	t.Helper()
	cfg, err := config.Parse([]byte(strings.ReplaceAll(twoModels, "MOCK", mockExe)))
	if err != nil {
		t.Fatal(err)
	}
	mem := probe.NewFake(mockExe, 10<<30)
	mem.Script("a", probe.Usage{RAM: 6 << 30})
	mem.Script("b", probe.Usage{RAM: 6 << 30})
	g := &rig{starts: &mocktest.Starter{}, cfg: cfg}
	g.sw = swapper.New(swapper.Options{Models: cfg.Models, Ports: cfg.Ports, Memory: mem, Starter: g.starts})
	opts := router.ConfigOptions(cfg, zap.NewNop())
	if edit != nil {
		edit(&opts)
	}
	g.r = router.New(g.sw, opts)
	t.Cleanup(func() {
		g.r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.sw.Close(ctx)
	})
	return g
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// call sends one chat request to the lease's backend and returns the most
// requests that backend has had in flight at once so far.
func call(l *router.Lease, model string) (maxInFlight int, err error) {
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	resp, err := httpClient.Post(l.Upstream()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Mock-Model") != model {
		return 0, fmt.Errorf("%s: status %d from %q", model, resp.StatusCode, resp.Header.Get("X-Mock-Model"))
	}
	resp, err = httpClient.Get(l.Upstream() + "/mock/stats")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		MaxInFlight int `json:"max_in_flight"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st.MaxInFlight, err
}

// workload is what a run of clients saw.
type workload struct {
	mu          sync.Mutex
	requests    int
	longestWait time.Duration
	maxInFlight int
	errs        []error
}

func (w *workload) record(wait time.Duration, inFlight int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.requests++
	w.longestWait = max(w.longestWait, wait)
	w.maxInFlight = max(w.maxInFlight, inFlight)
	if err != nil {
		w.errs = append(w.errs, err)
	}
}

// request waits for model's turn, calls its backend and releases it.
func (g *rig) request(w *workload, model string) {
	begin := time.Now()
	l, err := g.r.Acquire(context.Background(), model)
	wait := time.Since(begin)
	if err != nil {
		w.record(wait, 0, err)
		return
	}
	n, err := call(l, model)
	l.Release()
	w.record(wait, n, err)
}

// interleave sends n requests alternating between a and b, one every
// 5ms, each from the next of several clients: an arrival order that
// swaps at every request if served in order. Each request is sent on time,
// whether or not earlier ones have been answered.
func (g *rig) interleave(n int) *workload {
	const clients = 8
	w := &workload{}
	send := make([]chan string, clients)
	var wg sync.WaitGroup
	for c := range send {
		send[c] = make(chan string, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var each sync.WaitGroup
			for model := range send[c] {
				each.Add(1)
				go func() {
					defer each.Done()
					g.request(w, model)
				}()
			}
			each.Wait()
		}()
	}
	tick := time.NewTicker(5 * time.Millisecond)
	for i := range n {
		send[i%clients] <- []string{"a", "b"}[i%2]
		<-tick.C
	}
	tick.Stop()
	for _, c := range send {
		close(c)
	}
	wg.Wait()
	return w
}

// The interleaved workload that makes simple proxies thrash: memory holds
// one of a and b, and requests alternate between them. fifo swaps for
// almost every request; batch serves each model's queue before swapping.
func TestBatchSwapsFarLessThanFIFO(t *testing.T) {
	const requests = 60
	const maxWait = 2 * time.Second
	swaps := map[string]int64{}
	for _, policy := range []string{config.PolicyFIFO, config.PolicyBatch} {
		// One at a time: the fake probe sees every mock process, so the
		// first run's backends must be gone before the second starts.
		t.Run(policy, func(t *testing.T) {
			g := newRig(t, func(o *router.Options) { o.Policy, o.MaxWait = policy, maxWait })
			w := g.interleave(requests)
			if len(w.errs) > 0 {
				t.Fatalf("%d of %d requests failed, first: %v", len(w.errs), w.requests, w.errs[0])
			}
			if w.requests != requests {
				t.Fatalf("%d answers for %d requests", w.requests, requests)
			}
			if w.maxInFlight > 2 {
				t.Errorf("a backend had %d requests at once; parallel is 2", w.maxInFlight)
			}
			swaps[policy] = g.starts.Starts()
			t.Logf("%d requests, %d backend starts, longest wait %s", w.requests, swaps[policy], w.longestWait)
			// A swap of the mock takes tens of milliseconds; a second of
			// slack absorbs a loaded CI machine.
			if limit := maxWait + time.Second; policy == config.PolicyBatch && w.longestWait > limit {
				t.Errorf("a request waited %s, more than max_wait and a swap (%s)", w.longestWait, limit)
			}
		})
	}
	if swaps[config.PolicyBatch]*5 > swaps[config.PolicyFIFO] {
		t.Errorf("batch made %d swaps, fifo %d: want at most a fifth", swaps[config.PolicyBatch], swaps[config.PolicyFIFO])
	}
}

// A steady stream of requests for a does not starve b: b's request is
// served once it has waited max_wait, while a still has requests queued.
func TestBatchServesTheOtherModelAfterMaxWait(t *testing.T) {
	const maxWait = time.Second
	g := newRig(t, func(o *router.Options) { o.MaxWait = maxWait })
	w := &workload{}
	var served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				g.request(w, "a")
				served.Add(1)
			}
		}()
	}
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt()
	if !mocktest.Eventually(10*time.Second, func() bool { return served.Load() >= 10 }) {
		t.Fatal("a is not being served")
	}
	bw := &workload{}
	before := served.Load()
	g.request(bw, "b")
	during := served.Load() - before
	if len(bw.errs) > 0 {
		t.Fatal(bw.errs[0])
	}
	t.Logf("b waited %s; a served %d requests meanwhile", bw.longestWait, during)
	if limit := maxWait + time.Second; bw.longestWait > limit {
		t.Errorf("b waited %s under steady load on a, more than max_wait and a swap (%s)", bw.longestWait, limit)
	}
	if during == 0 {
		t.Error("a was not served while b waited: b was swapped in at once")
	}
	halt()
	if len(w.errs) > 0 {
		t.Fatal(w.errs[0])
	}
}

// acquire holds a lease on model, failing the test if it cannot.
func (g *rig) acquire(t *testing.T, model string) *router.Lease {
	t.Helper()
	l, err := g.r.Acquire(context.Background(), model)
	if err != nil {
		t.Fatalf("%s: %v", model, err)
	}
	return l
}

// enqueue queues a request for model; its ticket is closed when the test
// ends.
func (g *rig) enqueue(t *testing.T, model string) *router.Ticket {
	t.Helper()
	tk, err := g.r.Enqueue(context.Background(), model)
	if err != nil {
		t.Fatalf("%s: %v", model, err)
	}
	t.Cleanup(tk.Close)
	return tk
}

// c fits beside anything: its requests go straight through while a and b
// take turns.
func TestModelThatFitsIsNotHeldBack(t *testing.T) {
	g := newRig(t, nil)
	la := g.acquire(t, "a")
	defer la.Release()
	g.acquire(t, "c").Release()
	if st := g.sw.State("a"); st != swapper.Ready {
		t.Errorf("a is %s after c started; c fits beside it", st)
	}
}

// TestFittingStartDoesNotWaitForASwap: a serves a long request and b,
// which does not fit beside a, waits (under fifo for a's drain, under
// batch for max_wait). c fits beside either: it is started and served
// while a's long request is still in flight, under both policies.
func TestFittingStartDoesNotWaitForASwap(t *testing.T) {
	for _, policy := range []string{config.PolicyFIFO, config.PolicyBatch} {
		t.Run(policy, func(t *testing.T) {
			g := newRig(t, func(o *router.Options) { o.Policy, o.MaxWait = policy, time.Minute })
			long := g.acquire(t, "a")
			forB := g.enqueue(t, "b")
			if policy == config.PolicyFIFO &&
				!mocktest.Eventually(5*time.Second, func() bool { return g.sw.State("a") == swapper.Draining }) {
				t.Fatalf("fifo did not swap b in over a: a is %v", g.sw.State("a"))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			lc, err := g.r.Acquire(ctx, "c")
			if err != nil {
				t.Fatalf("c, which fits beside a and b, while b waits: %v", err)
			}
			if _, err := call(lc, "c"); err != nil {
				t.Fatal(err)
			}
			lc.Release()
			if st := g.sw.State("b"); st == swapper.Ready {
				t.Error("b is ready: c was not served before b")
			}
			if n := g.r.Stats("a").InFlight.Load(); n != 1 {
				t.Errorf("a has %d in flight, want its long request: c waited for it", n)
			}
			long.Release()
			if policy == config.PolicyFIFO {
				lb, err := forB.Next(0)
				if err != nil {
					t.Fatalf("b after a's drain: %v", err)
				}
				lb.Release()
			}
		})
	}
}

// TestQueueFullAndTimeout: a full queue refuses at once with a
// Retry-After; a queued request times out when queue_timeout has passed on
// the router's clock (a fake one: no real wait, no margin).
func TestQueueFullAndTimeout(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := newRig(t, func(o *router.Options) { o.QueueSize, o.QueueTimeout, o.Clock = 1, 300*time.Millisecond, fc })
	held := g.acquire(t, "c")
	defer held.Release()
	queued := g.enqueue(t, "c")
	if n := g.r.Stats("c").Queued.Load(); n != 1 {
		t.Fatalf("%d queued, want the second request", n)
	}
	_, err := g.r.Acquire(context.Background(), "c")
	var qf *router.QueueFullError
	if !errors.As(err, &qf) || qf.RetryAfter < time.Second {
		t.Fatalf("third request: %v, want a QueueFullError with a Retry-After", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := queued.Next(0)
		done <- err
	}()
	// The timeout counts from the enqueue, whether or not Next has made
	// its timer yet.
	fc.Advance(300 * time.Millisecond)
	select {
	case err := <-done:
		if !errors.Is(err, router.ErrQueueTimeout) {
			t.Fatalf("queued request: %v, want a queue timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued request outlived its queue timeout")
	}
	if n := g.r.Stats("c").Queued.Load(); n != 0 {
		t.Errorf("%d still queued after the timeout", n)
	}
}

// A request whose client leaves gives its place up at once, and the next
// one can take it.
func TestCancelledRequestLeavesTheQueue(t *testing.T) {
	g := newRig(t, func(o *router.Options) { o.QueueSize = 1 })
	held := g.acquire(t, "c")
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		_, err := g.r.Acquire(ctx, "c")
		left <- err
	}()
	if !mocktest.Eventually(5*time.Second, func() bool { return g.r.Stats("c").Queued.Load() == 1 }) {
		t.Fatal("the second request is not queued")
	}
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	next := g.enqueue(t, "c")
	held.Release()
	l, err := next.Next(0)
	if err != nil {
		t.Fatalf("the request after the one that left: %v", err)
	}
	l.Release()
	if n := g.r.Stats("c").InFlight.Load(); n != 0 {
		t.Errorf("%d still in flight after every release", n)
	}
}

func TestCloseRefusesQueuedRequests(t *testing.T) {
	g := newRig(t, nil)
	held := g.acquire(t, "c")
	defer held.Release()
	queued := g.enqueue(t, "c")
	g.r.Close()
	if _, err := queued.Next(0); !errors.Is(err, swapper.ErrClosed) {
		t.Fatalf("queued request at close: %v", err)
	}
	if _, err := g.r.Enqueue(context.Background(), "c"); !errors.Is(err, swapper.ErrClosed) {
		t.Fatalf("request after close: %v", err)
	}
}

// TestARequestForADrainingModelWaitsOnlyInItsQueue: a is leaving (b's
// start evicted it while it serves a long request). A request for a is
// not handed a drained backend, nor sent after a restart: it waits in its
// queue, and its queue timeout, on the router's clock, is kept to the
// tick, whatever a's drain is doing.
func TestARequestForADrainingModelWaitsOnlyInItsQueue(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := newRig(t, func(o *router.Options) {
		o.Policy, o.QueueTimeout, o.Clock = config.PolicyFIFO, 30*time.Second, fc
	})
	long := g.acquire(t, "a") // in flight until the test ends
	defer long.Release()
	forB := g.enqueue(t, "b") // fifo: b goes in over a, at once
	if !mocktest.Eventually(5*time.Second, func() bool { return g.sw.State("a") == swapper.Draining }) {
		t.Fatalf("a is %v", g.sw.State("a"))
	}
	forA := g.enqueue(t, "a")
	done := make(chan error, 1)
	go func() {
		_, err := forA.Next(0)
		done <- err
	}()
	if !fc.BlockUntil(1, 5*time.Second) { // its queue timeout's timer
		t.Fatal("the request is not waiting")
	}
	if q, f := g.r.Stats("a").Queued.Load(), g.r.Stats("a").InFlight.Load(); q != 1 || f != 1 {
		t.Fatalf("a: %d queued, %d in flight; want the new request queued behind the long one", q, f)
	}
	fc.Advance(29 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("before its queue timeout: %v", err)
	default:
	}
	fc.Advance(time.Second)
	select {
	case err := <-done:
		if !errors.Is(err, router.ErrQueueTimeout) {
			t.Fatalf("at its queue timeout: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request for the draining model outlived its queue timeout")
	}
	if st := g.sw.State("a"); st != swapper.Draining {
		t.Errorf("a is %v: the drain should still be going on under its long request", st)
	}
	forB.Close()
}

// TestReconfigureParallelAppliesAtOnce: a queued request goes as soon as
// a reload raises its model's cap, without waiting for a release.
func TestReconfigureParallelAppliesAtOnce(t *testing.T) {
	var opts router.Options
	g := newRig(t, func(o *router.Options) { opts = *o })
	held := g.acquire(t, "c")
	defer held.Release()
	queued := g.enqueue(t, "c")
	// Decided at once, as it arrived: queued behind the one in flight.
	if st := g.r.Stats("c"); st.Queued.Load() != 1 || st.InFlight.Load() != 1 {
		t.Fatalf("c's second request went past parallel 1: queued %d, in flight %d", st.Queued.Load(), st.InFlight.Load())
	}
	opts.Parallel = map[string]int{"a": 2, "b": 2, "c": 2}
	g.reconfigure(opts)
	l, err := queued.Next(5 * time.Second)
	if l == nil || err != nil {
		t.Fatalf("after raising c's parallel to 2: %v %v", l, err)
	}
	l.Release()
}

// TestReconfigureRemovesAModelAfterItsQueue: a removed model takes no new
// requests, serves those queued, then is forgotten.
func TestReconfigureRemovesAModelAfterItsQueue(t *testing.T) {
	var opts router.Options
	g := newRig(t, func(o *router.Options) { opts = *o })
	held := g.acquire(t, "c")
	queued := g.enqueue(t, "c")
	opts.Parallel = map[string]int{"a": 2, "b": 2}
	emptied := g.reconfigure(opts)
	done, ok := emptied["c"]
	if !ok || len(emptied) != 1 {
		t.Fatalf("removed: %v", emptied)
	}
	if _, err := g.r.Enqueue(context.Background(), "c"); !errors.Is(err, swapper.ErrUnknownModel) {
		t.Errorf("a new request for a removed model: %v", err)
	}
	select {
	case <-done:
		t.Fatal("c's queue reported empty with a request in it")
	default:
	}
	held.Release()
	l, err := queued.Next(5 * time.Second)
	if l == nil || err != nil {
		t.Fatalf("the request queued for a removed model was not served: %v %v", l, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("c's queue emptied without saying so")
	}
	l.Release()
	g.r.Remove(context.Background(), "c")
	if g.r.Stats("c") != nil {
		t.Error("c is still known after Remove")
	}
	// Brought back by a later reload, it is served again.
	opts.Parallel = map[string]int{"a": 2, "b": 2, "c": 1}
	g.reconfigure(opts)
	g.acquire(t, "c").Release()
}

// TestReconfigureBringsARemovedModelBack: added back while requests are
// still queued for it, a model is served as before, and whoever waited for
// its removal is let go.
func TestReconfigureBringsARemovedModelBack(t *testing.T) {
	var opts router.Options
	g := newRig(t, func(o *router.Options) { opts = *o })
	held := g.acquire(t, "c")
	defer held.Release()
	g.enqueue(t, "c")
	all := opts.Parallel
	opts.Parallel = map[string]int{"a": 2, "b": 2}
	emptied := g.reconfigure(opts)["c"]
	opts.Parallel = all
	g.reconfigure(opts)
	select {
	case <-emptied:
	default:
		t.Fatal("the removal's wait was not let go when c came back")
	}
	g.r.Remove(context.Background(), "c") // too late: c is configured again
	if g.r.Stats("c") == nil {
		t.Fatal("c was forgotten although it is back")
	}
	if _, err := g.r.Enqueue(context.Background(), "c"); err != nil {
		t.Errorf("a new request for c: %v", err)
	}
}
