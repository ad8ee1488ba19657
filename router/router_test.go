package router_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

func newRouter(t *testing.T, queueSize int, timeout time.Duration) *router.Router {
	t.Helper()
	cfg, err := config.Parse([]byte(strings.ReplaceAll(`
ports: 24000-24999
models:
  one:
    cmd: MOCK -port ${PORT}
    parallel: 1
  two:
    cmd: MOCK -port ${PORT}
    parallel: 2
`, "MOCK", mockExe)))
	if err != nil {
		t.Fatal(err)
	}
	sw := swapper.New(swapper.Options{Models: cfg.Models, Ports: cfg.Ports})
	t.Cleanup(func() { sw.Close(context.Background()) })
	return router.New(sw, router.Options{
		Parallel:     map[string]int{"one": 1, "two": 2},
		QueueSize:    queueSize,
		QueueTimeout: timeout,
	})
}

func acquire(t *testing.T, r *router.Router, model string) *router.Lease {
	t.Helper()
	l, err := r.Acquire(context.Background(), model)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParallelBoundsInFlight(t *testing.T) {
	r := newRouter(t, 10, time.Minute)
	a := acquire(t, r, "two")
	b := acquire(t, r, "two")
	got := make(chan *router.Lease, 1)
	go func() {
		l, err := r.Acquire(context.Background(), "two")
		if err == nil {
			got <- l
		}
	}()
	// The third request queues instead of being sent to the backend.
	if !mocktest.Eventually(5*time.Second, func() bool { return r.Waiting("two") == 1 }) {
		t.Fatal("the third request never queued")
	}
	select {
	case <-got:
		t.Fatal("a third request got a backend that takes two at once")
	default:
	}
	a.Release()
	select {
	case l := <-got:
		l.Release()
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request was not admitted when a slot freed")
	}
	b.Release()
	b.Release() // twice is harmless
}

func TestQueueFull(t *testing.T) {
	r := newRouter(t, 1, time.Minute)
	busy := acquire(t, r, "one")
	defer busy.Release()
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() {
		_, err := r.Acquire(ctx, "one")
		waiting <- err
	}()
	if !mocktest.Eventually(5*time.Second, func() bool { return r.Waiting("one") == 1 }) {
		t.Fatal("the waiter never queued")
	}
	// With one waiting and a queue of one, the next is turned away at once.
	if _, err := r.Acquire(context.Background(), "one"); !errors.Is(err, router.ErrQueueFull) {
		t.Fatalf("err %v, want queue full", err)
	}
	// A waiter that gives up frees its place.
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := r.Acquire(ctx2, "one"); errors.Is(err, router.ErrQueueFull) {
		t.Error("the place of a waiter that left was not freed")
	}
}

func TestQueueTimeout(t *testing.T) {
	r := newRouter(t, 10, 200*time.Millisecond)
	busy := acquire(t, r, "one")
	defer busy.Release()
	_, err := r.Acquire(context.Background(), "one")
	if !errors.Is(err, router.ErrQueueTimeout) {
		t.Errorf("err %v, want a queue timeout", err)
	}
}

func TestUnknownModel(t *testing.T) {
	r := newRouter(t, 10, time.Minute)
	if _, err := r.Acquire(context.Background(), "three"); !errors.Is(err, swapper.ErrUnknownModel) {
		t.Errorf("err %v", err)
	}
}
