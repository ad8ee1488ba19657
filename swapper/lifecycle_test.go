package swapper_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/swapper"
)

// aOrBWithC: memory holds A+C or B+C, never A+B.
const aOrBWithC = `
models:
  A: {cmd: "MOCK -port ${PORT} -model A", memory: {ram: 6GiB}}
  B: {cmd: "MOCK -port ${PORT} -model B", memory: {ram: 6GiB}}
  C: {cmd: "MOCK -port ${PORT} -model C", memory: {ram: 1GiB}}
`

func aOrBWithCMemory(t *testing.T) *probe.Fake {
	f := probe.NewFake(mockExe, 10*gib)
	f.Script("A", probe.Usage{RAM: 6 * gib})
	f.Script("B", probe.Usage{RAM: 6 * gib})
	f.Script("C", probe.Usage{RAM: 1 * gib})
	return f
}

// TestAStartThatFitsDoesNotWaitForADrain: A serves a long request, B is
// decided in its place, so A drains. C fits beside either, so C starts
// and is served at once, while A still drains and B waits for it.
func TestAStartThatFitsDoesNotWaitForADrain(t *testing.T) {
	fake := aOrBWithCMemory(t)
	sw, _ := memSwapper(t, aOrBWithC, fake, nil)
	long := acquire(t, sw, "A") // a request in flight on A
	pidA := pid(sw, "A")
	d, err := sw.Start("B", swapper.Policy{EvictBusy: true})
	if err != nil || len(d.Victims) != 1 || d.Victims[0] != "A" || len(d.Busy) != 1 {
		t.Fatalf("decision %+v, %v", d, err)
	}
	if state(sw, "A") != swapper.Draining {
		t.Fatalf("A is %v", state(sw, "A"))
	}
	c := acquire(t, sw, "C")
	if got := states(sw, "A", "B", "C"); got != "A=draining B=starting C=ready" || !mocktest.Alive(pidA) {
		t.Fatalf("%s (A alive %v): C should be served while A drains", got, mocktest.Alive(pidA))
	}
	c.Release()
	long.Release()
	if !mocktest.Eventually(10*time.Second, func() bool { return states(sw, "A", "B", "C") == "A=stopped B=ready C=ready" }) {
		t.Fatalf("after A's request: %s", states(sw, "A", "B", "C"))
	}
	if peak := fake.PeakRAM(); peak > 10*gib {
		t.Errorf("%s in use at once on a 10GiB machine", config.FormatSize(peak))
	}
}

// TestExecutedEvictionsAreTheDecidedOnes runs a sequence of switches over
// five models of which three fit, and checks in the log that the models
// stopped to make room for each start are exactly those decided for it.
func TestExecutedEvictionsAreTheDecidedOnes(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	sw, _ := memSwapper(t, fiveModels, fakeFor(t, 10*gib), func(o *swapper.Options) { o.Log = zap.New(core) })
	rng := rand.New(rand.NewPCG(1, 2))
	for range 25 {
		use(t, sw, []string{"a", "b", "c", "d"}[rng.IntN(4)])
	}
	decided := map[string]int{} // "victim for target"
	for _, e := range logs.FilterMessage("starting").All() {
		f := e.ContextMap()
		victims, _ := f["evicting"].([]any)
		for _, v := range victims {
			decided[fmt.Sprint(v, " for ", f["model"])]++
		}
	}
	// Stops are logged as they end: wait until every decided one has.
	total := 0
	for _, n := range decided {
		total += n
	}
	stopped := map[string]int{}
	if !mocktest.Eventually(5*time.Second, func() bool {
		stopped = map[string]int{}
		n := 0
		for _, e := range logs.FilterMessage("backend stopped").All() {
			f := e.ContextMap()
			var target string
			if _, err := fmt.Sscanf(fmt.Sprint(f["reason"]), "making room for %s", &target); err == nil {
				stopped[fmt.Sprint(f["model"], " for ", target)]++
				n++
			}
		}
		return n >= total
	}) {
		t.Fatalf("stops %v never caught up with decisions %v", stopped, decided)
	}
	if total == 0 {
		t.Fatal("no switch made room")
	}
	if fmt.Sprint(decided) != fmt.Sprint(stopped) {
		t.Errorf("decided %v\nstopped %v", decided, stopped)
	}
}

// TestRacingStartsNeverOvercommit: many requests for models that do not
// all fit, at once and in no order; a sampler looks at the machine's
// memory the whole time, and it is never more than full.
func TestRacingStartsNeverOvercommit(t *testing.T) {
	fake := probe.NewFake(mockExe, 10*gib)
	for _, m := range []string{"a", "b", "c", "d"} {
		fake.Script(m, probe.Usage{RAM: 4 * gib})
	}
	sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a -startup 20ms", memory: {ram: 4GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b -startup 20ms", memory: {ram: 4GiB}}
  c: {cmd: "MOCK -port ${PORT} -model c -startup 20ms", memory: {ram: 4GiB}}
  d: {cmd: "MOCK -port ${PORT} -model d -startup 20ms", memory: {ram: 4GiB}}
`, fake, nil)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
				fake.Devices(context.Background())
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, err := sw.Acquire(ctx, []string{"a", "b", "c", "d"}[i%4])
			if err != nil {
				t.Error(err)
				return
			}
			l.Release()
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	if peak := fake.PeakRAM(); peak > 10*gib {
		t.Errorf("%s in use at once on a 10GiB machine", config.FormatSize(peak))
	}
}

// TestDrainTimeout runs on a fake clock: a model that must make room has a
// request that runs on; once the drain timeout has passed (and not
// before) it is stopped under the request, which is told why, and the
// start goes on.
func TestDrainTimeout(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	sw, _ := memSwapper(t, aOrBWithC, aOrBWithCMemory(t), func(o *swapper.Options) {
		o.Clock = fc
		o.DrainTimeout = time.Minute
	})
	long := acquire(t, sw, "A")
	defer long.Release()
	got := useLater(sw, "B")
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "A") == swapper.Draining }) {
		t.Fatalf("A is %v", state(sw, "A"))
	}
	// The drain's timer is armed by its own goroutine: beside the
	// refresher's and the janitor's, it makes three.
	if !fc.BlockUntil(3, 5*time.Second) {
		t.Fatalf("the drain timer was never armed (%d timers)", fc.Timers())
	}
	fc.Advance(59 * time.Second)
	select {
	case err := <-got:
		t.Fatalf("B got in (%v) before A's drain timeout", err)
	case <-long.Gone():
		t.Fatal("A was stopped before its drain timeout")
	default:
	}
	fc.Advance(time.Second)
	select {
	case <-long.Gone():
	case <-time.After(10 * time.Second):
		t.Fatal("A was not stopped at its drain timeout")
	}
	if err := <-got; err != nil {
		t.Fatalf("B: %v", err)
	}
	var dt *swapper.DrainTimeoutError
	if err := long.Cause(); !errors.As(err, &dt) || !errors.Is(err, swapper.ErrDrainTimeout) || dt.Model != "A" {
		t.Errorf("the cut request is told %v", err)
	}
}
