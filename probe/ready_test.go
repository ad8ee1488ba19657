package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
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

func TestWaitReturnsOnceHealthy(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	// Healthy only on the fourth check: polling must go on until then.
	url := healthServer(t, &ready, &hits, 4)
	r := &Readiness{}
	if err := r.Wait(context.Background(), url, WaitOptions{Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if hits.Load() < 4 {
		t.Errorf("%d checks", hits.Load())
	}
}

func TestWaitTimesOutWithLastError(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	url := healthServer(t, &ready, &hits, 0)
	err := (&Readiness{}).Wait(context.Background(), url, WaitOptions{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("err %v", err)
	}
	if hits.Load() < 3 {
		t.Errorf("only %d checks in the timeout: polling is too slow", hits.Load())
	}
}

func TestWaitStallTimeoutRestartsOnActivity(t *testing.T) {
	var ready atomic.Bool
	var hits atomic.Int64
	url := healthServer(t, &ready, &hits, 0)
	start := time.Now()
	var activity atomic.Int64
	activity.Store(start.UnixNano())
	done := make(chan struct{})
	defer close(done)
	// Activity every 20ms for 400ms, then ready: four times the timeout.
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				activity.Store(now.UnixNano())
				if now.Sub(start) > 400*time.Millisecond {
					ready.Store(true)
				}
			}
		}
	}()
	err := (&Readiness{}).Wait(context.Background(), url, WaitOptions{
		Timeout:      100 * time.Millisecond,
		LastActivity: func() time.Time { return time.Unix(0, activity.Load()) },
	})
	if err != nil {
		t.Fatalf("a progressing backend was given up on: %v", err)
	}
}

func TestWaitGivesUpWhenProcessExits(t *testing.T) {
	exited := make(chan struct{})
	close(exited)
	// Nothing listens here; without Exited this would poll for a minute.
	err := (&Readiness{}).Wait(context.Background(), "http://127.0.0.1:1/health", WaitOptions{
		Timeout: time.Minute, Exited: exited,
	})
	if !errors.Is(err, ErrExited) {
		t.Errorf("err %v", err)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := (&Readiness{}).Wait(ctx, "http://127.0.0.1:1/health", WaitOptions{Timeout: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
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
	err := (&Readiness{}).Check(lateCtx{context.Background()}, "http://127.0.0.1:1/health")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want a deadline error", err)
	}
}
