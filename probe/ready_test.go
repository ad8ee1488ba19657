package probe_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
)

// healthServer answers 503 until ready is set or readyAt checks have come
// (0: never by count), then 200.
func healthServer(t *testing.T, ready *atomic.Bool, hits *atomic.Int64, readyAt int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := hits.Add(1); ready.Load() || (readyAt > 0 && n >= readyAt) {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(503)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/health"
}

// poller runs Wait on a fake clock against a health server, so that a
// test moves the time from poll to poll and counts the checks each move
// brings: polling and timeouts are tested to the tick, without sleeping
// and without slack for a busy machine.
type poller struct {
	t    *testing.T
	fc   *clock.Fake
	hits *atomic.Int64
	done chan error
}

// startWait begins Wait on fc and returns once it has made its first
// check (at once, without the clock moving) and waits for the next.
func startWait(t *testing.T, url string, hits *atomic.Int64, opts probe.WaitOptions) (*poller, context.CancelFunc) {
	t.Helper()
	p := &poller{t: t, fc: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), hits: hits, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r := &probe.Readiness{Clock: p.fc}
	go func() { p.done <- r.Wait(ctx, url, opts) }()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	// The first check is counted before the timer for the second is
	// armed: from then on an armed timer is the next poll's.
	if !mocktest.Eventually(10*time.Second, func() bool { return hits.Load() >= 1 }) {
		t.Fatal("no first check")
	}
	p.waiting(1)
	return p, cancel
}

// waiting fails the test unless Wait has made n checks in all and waits
// on the clock for its next one.
func (p *poller) waiting(n int64) {
	p.t.Helper()
	if !p.fc.BlockUntil(1, 10*time.Second) {
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup
			p.t.Fatalf("after %d checks Wait returned %v, want it polling", p.hits.Load(), err)
		default:
			p.t.Fatalf("after %d checks Wait is not waiting for the next", p.hits.Load())
		}
	}
	if got := p.hits.Load(); got != n {
		p.t.Fatalf("%d checks at %s, want %d", got, p.fc.Now().Format("15:04:05.000"), n)
	}
}

// result is what Wait returned, once a move of the clock has ended it.
func (p *poller) result() error {
	p.t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		p.t.Fatalf("Wait did not return after %d checks", p.hits.Load())
		return nil
	}
}

// TestWaitPollsEveryIntervalUntilHealthy: checks come one interval apart
// on Wait's clock, none before, and Wait returns at the first that
// answers 200.
func TestWaitPollsEveryIntervalUntilHealthy(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	url := healthServer(t, &ready, &hits, 4) // healthy on the fourth check
	const interval = 100 * time.Millisecond
	p, _ := startWait(t, url, &hits, probe.WaitOptions{Timeout: time.Minute, Interval: interval})
	for n := int64(2); n <= 3; n++ {
		p.fc.Advance(interval - time.Millisecond)
		p.waiting(n - 1) // not yet
		p.fc.Advance(time.Millisecond)
		p.waiting(n)
	}
	p.fc.Advance(interval)
	if err := p.result(); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 4 {
		t.Errorf("%d checks, want 4", n)
	}
}

// TestWaitTimesOutWithLastError: a backend that never gets healthy is
// given up on when its timeout ends, to the tick (not up to an interval
// later), and the error says what the last check got.
func TestWaitTimesOutWithLastError(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	url := healthServer(t, &ready, &hits, 0)
	// Checks at 0, 300, 600 and 900ms; given up on at 1s.
	p, _ := startWait(t, url, &hits, probe.WaitOptions{Timeout: time.Second, Interval: 300 * time.Millisecond})
	for n := int64(2); n <= 4; n++ {
		p.fc.Advance(300 * time.Millisecond)
		p.waiting(n)
	}
	p.fc.Advance(99 * time.Millisecond)
	p.waiting(4) // at 999ms it still waits
	p.fc.Advance(time.Millisecond)
	err := p.result()
	if !errors.Is(err, probe.ErrNotReady) || !strings.Contains(err.Error(), "status 503") {
		t.Fatalf("err %v, want ErrNotReady with the last check's 503", err)
	}
	if n := hits.Load(); n != 4 {
		t.Errorf("%d checks, want 4", n)
	}
}

// TestWaitStallTimeoutRestartsOnActivity: with LastActivity, the timeout
// is a stall timeout. A backend that shows activity keeps being polled
// for four times its timeout; once it goes silent it is given up on one
// timeout after its last sign of life, to the tick.
func TestWaitStallTimeoutRestartsOnActivity(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	url := healthServer(t, &ready, &hits, 0)
	var activity atomic.Int64 // on the fake clock, as UnixNano
	const timeout, interval = 100 * time.Millisecond, 20 * time.Millisecond
	p, _ := startWait(t, url, &hits, probe.WaitOptions{
		Timeout:      timeout,
		Interval:     interval,
		LastActivity: func() time.Time { return time.Unix(0, activity.Load()) },
	})
	n := int64(1)
	// Activity with every poll, for 400ms: four times the timeout.
	for range 20 {
		activity.Store(p.fc.Now().UnixNano())
		p.fc.Advance(interval)
		n++
		p.waiting(n)
	}
	// Silent from now: polled on until one timeout after the last sign
	// of life (20ms ago), then given up on.
	last := time.Unix(0, activity.Load())
	for p.fc.Now().Add(interval).Before(last.Add(timeout)) {
		p.fc.Advance(interval)
		n++
		p.waiting(n)
	}
	p.fc.Advance(last.Add(timeout).Sub(p.fc.Now()) - time.Millisecond)
	p.waiting(n) // a millisecond before, it still waits
	p.fc.Advance(time.Millisecond)
	if err := p.result(); !errors.Is(err, probe.ErrNotReady) {
		t.Fatalf("err %v, want ErrNotReady once it went silent", err)
	}
	if got := p.fc.Now().Sub(last); got != timeout {
		t.Errorf("given up on %s after the last activity, want %s", got, timeout)
	}
}

// TestWaitChecksAtOnceWhenWoken: a backend's output (Wake) brings a check
// at once, without waiting out the interval.
func TestWaitChecksAtOnceWhenWoken(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	url := healthServer(t, &ready, &hits, 0)
	wake := make(chan struct{}, 1)
	p, _ := startWait(t, url, &hits, probe.WaitOptions{Timeout: time.Minute, Interval: time.Second, Wake: wake})
	wake <- struct{}{}
	// The clock has not moved.
	if !mocktest.Eventually(10*time.Second, func() bool { return hits.Load() == 2 }) {
		t.Fatalf("%d checks after a wake, want 2", hits.Load())
	}
	ready.Store(true)
	wake <- struct{}{}
	if err := p.result(); err != nil {
		t.Fatal(err)
	}
}

// TestWaitWithoutTimeout: no timeout means polling until healthy (or
// until ctx ends), not failing every check at once.
func TestWaitWithoutTimeout(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	url := healthServer(t, &ready, &hits, 3)
	p, _ := startWait(t, url, &hits, probe.WaitOptions{Interval: time.Hour})
	p.fc.Advance(time.Hour)
	p.waiting(2)
	p.fc.Advance(time.Hour)
	if err := p.result(); err != nil {
		t.Fatalf("err %v, want healthy on the third check", err)
	}
}

func TestWaitGivesUpWhenProcessExits(t *testing.T) {
	exited := make(chan struct{})
	close(exited)
	// Nothing listens here; without Exited this would poll for a minute.
	err := (&probe.Readiness{}).Wait(context.Background(), "http://127.0.0.1:1/health", probe.WaitOptions{
		Timeout: time.Minute, Exited: exited,
	})
	if !errors.Is(err, probe.ErrExited) {
		t.Errorf("err %v", err)
	}
}

// TestWaitHonoursContext: Wait, waiting for its next poll, returns the
// context's error once it ends.
func TestWaitHonoursContext(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	url := healthServer(t, &ready, &hits, 0)
	p, cancel := startWait(t, url, &hits, probe.WaitOptions{Timeout: time.Minute, Interval: time.Second})
	cancel()
	if err := p.result(); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
}

// lateCtx is a context whose deadline has passed while its timer has not
// yet run (as on a busy machine): Err is still nil.
type lateCtx struct{ context.Context }

func (lateCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestCheckPastItsDeadlineIsNotReady: a check whose deadline has passed
// fails, even before the context says so.
func TestCheckPastItsDeadlineIsNotReady(t *testing.T) {
	err := (&probe.Readiness{}).Check(lateCtx{context.Background()}, "http://127.0.0.1:1/health")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want a deadline error", err)
	}
}
