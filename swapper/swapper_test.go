package swapper_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/swapper"
)

// newSwapper returns a swapper for the YAML config text, in which MOCK is
// the mock backend's path, and counts process starts per model.
func newSwapper(t *testing.T, text string) (*swapper.Swapper, *config.Config, *mocktest.Starter) {
	t.Helper()
	cfg, err := config.Parse([]byte("ports: 21000-21999\n" + strings.ReplaceAll(text, "MOCK", mockExe)))
	if err != nil {
		t.Fatal(err)
	}
	st := &mocktest.Starter{}
	sw := swapper.New(swapper.Options{Models: cfg.Models, Ports: cfg.Ports, Starter: st})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sw.Close(ctx)
	})
	return sw, cfg, st
}

func acquire(t *testing.T, sw *swapper.Swapper, model string) *swapper.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := sw.Acquire(ctx, model)
	if err != nil {
		t.Fatalf("acquire %s: %v", model, err)
	}
	return l
}

func state(sw *swapper.Swapper, model string) swapper.State {
	st, _ := sw.Status(model)
	return st.State
}

func pid(sw *swapper.Swapper, model string) int {
	st, _ := sw.Status(model)
	return st.Pid
}

func TestStartsAreSingleFlight(t *testing.T) {
	sw, _, st := newSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -startup 200ms"}
`)
	var wg sync.WaitGroup
	pids := make([]int, 50)
	for i := range pids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := acquire(t, sw, "a")
			pids[i] = pid(sw, "a")
			l.Release()
		}()
	}
	wg.Wait()
	if st.Starts() != 1 {
		t.Errorf("%d starts, want 1", st.Starts())
	}
	for _, p := range pids {
		if p != pids[0] || p == 0 {
			t.Fatalf("pids %v", pids)
		}
	}
}

func TestUnknownModel(t *testing.T) {
	sw, _, _ := newSwapper(t, "models:\n  a: {cmd: \"MOCK -port ${PORT}\"}\n")
	if _, err := sw.Acquire(context.Background(), "b"); !errors.Is(err, swapper.ErrUnknownModel) {
		t.Errorf("err %v", err)
	}
}

func TestStartFailureCarriesOutputAndBacksOff(t *testing.T) {
	sw, _, st := newSwapper(t, "models:\n  bad: {cmd: \"MOCK -port ${PORT} -fail-start\"}\n")
	_, err := sw.Acquire(context.Background(), "bad")
	var se *swapper.StartError
	if !errors.As(err, &se) {
		t.Fatalf("err %v, want a StartError", err)
	}
	if !strings.Contains(se.Error(), "out of memory (mock)") || se.RetryAt.IsZero() {
		t.Errorf("start error %q, retry at %v", se, se.RetryAt)
	}
	_, err = sw.Acquire(context.Background(), "bad")
	var be *swapper.BackoffError
	if !errors.As(err, &be) || st.Starts() != 1 {
		t.Errorf("second acquire: %v after %d starts; want a back-off and no new start", err, st.Starts())
	}
}

func TestMissingExecutable(t *testing.T) {
	sw, _, _ := newSwapper(t, "models:\n  gone: {cmd: \"/nonexistent/llama-server --port ${PORT}\"}\n")
	_, err := sw.Acquire(context.Background(), "gone")
	var se *swapper.StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "/nonexistent/llama-server") {
		t.Errorf("err %v", err)
	}
}

func TestStallTimeoutSparesAProgressingLoad(t *testing.T) {
	sw, _, _ := newSwapper(t, `
models:
  talkative:
    # Loads for 1.5s but prints progress every 100ms: not hung.
    cmd: MOCK -port ${PORT} -startup 1500ms -progress-interval 100ms
    health_timeout: 500ms
  silent:
    cmd: MOCK -port ${PORT} -hang
    health_timeout: 500ms
`)
	l := acquire(t, sw, "talkative")
	l.Release()
	_, err := sw.Acquire(context.Background(), "silent")
	if err == nil || !strings.Contains(err.Error(), "did not become healthy") {
		t.Errorf("silent load: %v", err)
	}
}

func TestCallerLeavingDoesNotAbortStart(t *testing.T) {
	sw, _, st := newSwapper(t, "models:\n  a: {cmd: \"MOCK -port ${PORT} -startup 300ms\"}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := sw.Acquire(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return state(sw, "a") == swapper.Ready }) {
		t.Fatalf("start abandoned: %v", state(sw, "a"))
	}
	l := acquire(t, sw, "a")
	l.Release()
	if st.Starts() != 1 {
		t.Errorf("%d starts", st.Starts())
	}
}

func TestSwitchDrainsBusyBackendFirst(t *testing.T) {
	// a and b use 6GiB each of 10GiB: b can start only once a is gone.
	fake := probe.NewFake(mockExe, 10<<30)
	fake.Script("a", probe.Usage{RAM: 6 << 30})
	fake.Script("b", probe.Usage{RAM: 6 << 30})
	sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 6GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", memory: {ram: 6GiB}}
`, fake, nil)
	la := acquire(t, sw, "a")
	pidA := pid(sw, "a")
	got := make(chan error, 1)
	go func() {
		lb, err := sw.Acquire(context.Background(), "b")
		if err == nil {
			lb.Release()
		}
		got <- err
	}()
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "a") == swapper.Draining }) {
		t.Fatalf("a is %v, want draining", state(sw, "a"))
	}
	// a request is in flight on a: it must not be killed under it.
	if !mocktest.Alive(pidA) || state(sw, "b") != swapper.Starting {
		t.Fatalf("a alive %v, b %v", mocktest.Alive(pidA), state(sw, "b"))
	}
	select {
	case err := <-got:
		t.Fatalf("b acquired (%v) while a still serves", err)
	default:
	}
	la.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if mocktest.Alive(pidA) || state(sw, "a") != swapper.Stopped {
		t.Errorf("a still running after the switch")
	}
}

func TestCrashIsNoticedAndRestarted(t *testing.T) {
	sw, _, st := newSwapper(t, "models:\n  a: {cmd: \"MOCK -port ${PORT}\"}\n")
	l := acquire(t, sw, "a")
	first := pid(sw, "a")
	syscall.Kill(first, syscall.SIGKILL)
	select {
	case <-l.Gone():
	case <-time.After(5 * time.Second):
		t.Fatal("crash not noticed")
	}
	l.Release() // a lease on a dead instance must not disturb the next one
	if state(sw, "a") != swapper.Stopped {
		t.Fatalf("state %v", state(sw, "a"))
	}
	l2 := acquire(t, sw, "a")
	defer l2.Release()
	if p := pid(sw, "a"); p == first || st.Starts() != 2 {
		t.Errorf("pid %d (was %d), %d starts", p, first, st.Starts())
	}
	if s, _ := sw.Status("a"); s.InFlight != 1 {
		t.Errorf("in flight %d, want 1", s.InFlight)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	sw, _, _ := newSwapper(t, `
stop_timeout: 300ms
models:
  stubborn: {cmd: "MOCK -port ${PORT} -ignore-sigterm"}
`)
	l := acquire(t, sw, "stubborn")
	p := pid(sw, "stubborn")
	l.Release()
	sw.Close(context.Background())
	if mocktest.Alive(p) {
		t.Errorf("process %d ignored SIGTERM and survived", p)
	}
}

// TestProcessGroupIsStopped runs the backend under a shell that leaves a
// child of its own; stopping the backend must take the child too.
func TestProcessGroupIsStopped(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "child-started")
	sw, _, _ := newSwapper(t, `
models:
  family:
    cmd: [/bin/sh, -c, "sleep 1000 & echo $! > `+marker+`; exec MOCK -port ${PORT}"]
`)
	l := acquire(t, sw, "family")
	l.Release()
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if !mocktest.Alive(child) {
		t.Fatalf("child %d not running", child)
	}
	sw.Close(context.Background())
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(child) }) {
		syscall.Kill(child, syscall.SIGKILL)
		t.Errorf("the backend's child %d outlived it", child)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	sw, _, _ := newSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT}"}
  slow: {cmd: "MOCK -port ${PORT} -startup 5s"}
`)
	l := acquire(t, sw, "a")
	p := pid(sw, "a")
	l.Release()
	// A start in progress when hotswap stops must not leave its process.
	go sw.Acquire(context.Background(), "slow")
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "slow") == swapper.Starting }) {
		t.Fatal("slow never started")
	}
	sw.Close(context.Background())
	if mocktest.Alive(p) {
		t.Errorf("a's process %d survived Close", p)
	}
	if _, err := sw.Acquire(context.Background(), "a"); !errors.Is(err, swapper.ErrClosed) {
		t.Errorf("acquire after close: %v", err)
	}
}
