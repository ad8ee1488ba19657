package swapper_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

// wrapped is a model whose cmd is a wrapper script: the server beside
// another process (a log shipper, say), and a wait for both. Killing the
// server leaves the wrapper running.
const wrapped = `
models:
  w:
    cmd: [/bin/sh, -c, "MOCK -port ${PORT} -model w & sleep 100000 & wait"]
    stop_timeout: 2s
  stubborn:
    cmd: MOCK -port ${PORT} -model stubborn -ignore-sigterm
    stop_timeout: 1s
`

// crashLog collects the crash events a swapper publishes.
type crashLog struct {
	mu     sync.Mutex
	events []events.Event
}

func (c *crashLog) listen(e events.Event) {
	if e.Type != events.Crash {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, e)
}

func (c *crashLog) all() []events.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]events.Event(nil), c.events...)
}

func wrappedSwapper(t *testing.T, tweak func(*swapper.Options)) (*swapper.Swapper, *crashLog) {
	t.Helper()
	cfg, err := config.Parse([]byte("ports: 23000-23999\n" + strings.ReplaceAll(wrapped, "MOCK", mockExe)))
	if err != nil {
		t.Fatal(err)
	}
	hub := events.NewHub(nil)
	crashes := &crashLog{}
	hub.Listen(crashes.listen)
	opts := swapper.Options{Models: cfg.Models, Ports: cfg.Ports, Starter: &mocktest.Starter{}, Events: hub}
	if tweak != nil {
		tweak(&opts)
	}
	sw := swapper.New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sw.Close(ctx)
	})
	return sw, crashes
}

// killServer kills the server behind l's backend with SIGKILL and returns
// the error a connection to it now meets: a refusal.
func killServer(t *testing.T, l *swapper.Lease) error {
	t.Helper()
	resp, err := http.Get(l.Upstream() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	server, err := strconv.Atoi(resp.Header.Get("X-Mock-Pid"))
	if err != nil {
		t.Fatalf("no server pid: %v", err)
	}
	if err := syscall.Kill(server, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(l.Upstream(), "http://")
	var refused error
	if !mocktest.Eventually(5*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return false
		}
		refused = err
		return errors.Is(err, syscall.ECONNREFUSED)
	}) {
		t.Fatalf("the killed server's port still answers: %v", refused)
	}
	return refused
}

// groupGone reports whether no process is left in the process group led
// by pid: the wrapper and everything it started.
func groupGone(pid int) bool { return syscall.Kill(-pid, 0) == syscall.ESRCH }

// TestUnreachableStopsTheWrapperAndRestarts: the server behind a wrapper
// is killed; the wrapper lives on, so no exit is seen. A refused
// connection reported on the lease is a crash: the model takes no more
// requests at once, the wrapper's whole group is stopped, a crash event
// says why, and the next request starts a new backend.
func TestUnreachableStopsTheWrapperAndRestarts(t *testing.T) {
	sw, crashes := wrappedSwapper(t, nil)
	l := acquire(t, sw, "w")
	wrapper := pid(sw, "w")
	refused := killServer(t, l)
	if !mocktest.Alive(wrapper) || state(sw, "w") != swapper.Ready {
		t.Fatalf("wrapper alive %v, state %v: the test needs a live wrapper", mocktest.Alive(wrapper), state(sw, "w"))
	}

	if !l.Unreachable(refused) {
		t.Fatal("a refusal on the current ready backend was not taken for death")
	}
	if st := state(sw, "w"); st != swapper.Stopping && st != swapper.Stopped {
		t.Errorf("right after the report: %v; a request must not be handed the dead backend", st)
	}
	var probe swapper.Lease
	if sw.TryLease("w", &probe) {
		t.Fatal("the dead backend was leased after the report")
	}
	select {
	case <-l.Gone():
	case <-time.After(10 * time.Second):
		t.Fatal("the dead instance was never retired")
	}
	if l.Cause() != nil {
		t.Errorf("cause %v: a crash is no stop on purpose", l.Cause())
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return groupGone(wrapper) }) {
		t.Errorf("the wrapper's group (pid %d) outlived the crash", wrapper)
	}
	if st := state(sw, "w"); st != swapper.Stopped {
		t.Errorf("after the crash: %v", st)
	}
	got := crashes.all()
	if len(got) != 1 || got[0].Model != "w" || got[0].Message != "stopped answering: connection refused" {
		t.Errorf("crash events %+v", got)
	}
	l.Release()

	l2 := acquire(t, sw, "w")
	defer l2.Release()
	if p := pid(sw, "w"); p == wrapper || p == 0 {
		t.Errorf("pid %d after the restart (was %d)", p, wrapper)
	}
	if l2.Instance() == l.Instance() {
		t.Error("the same instance after a restart")
	}
	resp, err := http.Get(l2.Upstream() + "/health")
	if err != nil {
		t.Fatalf("the new backend: %v", err)
	}
	resp.Body.Close()
}

// TestUnreachableIgnoresWhatIsNotDeath: only a refusal on the current
// ready backend counts. A timeout is a slow backend; a lease on a run
// that has been replaced is stale.
func TestUnreachableIgnoresWhatIsNotDeath(t *testing.T) {
	sw, crashes := wrappedSwapper(t, nil)
	l := acquire(t, sw, "w")
	wrapper := pid(sw, "w")
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	if l.Unreachable(timeout) || l.Unreachable(errors.New("connection reset by peer")) {
		t.Error("a timeout or a reset was taken for death")
	}
	if state(sw, "w") != swapper.Ready || pid(sw, "w") != wrapper {
		t.Fatalf("state %v, pid %d (was %d)", state(sw, "w"), pid(sw, "w"), wrapper)
	}

	refused := killServer(t, l)
	if !l.Unreachable(refused) {
		t.Fatal("not taken for dead")
	}
	if l.Unreachable(refused) {
		t.Error("a second report on the same run counted again")
	}
	l.Release()
	l2 := acquire(t, sw, "w")
	defer l2.Release()
	// The old run's lease reports again: the new run is not touched.
	if l.Unreachable(refused) {
		t.Error("a stale report was acted on")
	}
	if state(sw, "w") != swapper.Ready || pid(sw, "w") == wrapper {
		t.Errorf("after a stale report: %v, pid %d", state(sw, "w"), pid(sw, "w"))
	}
	if n := len(crashes.all()); n != 1 {
		t.Errorf("%d crash events, want 1", n)
	}
}

// TestUnreachableWhileDraining: a model that is leaving (an unload waits
// for its request in flight) is found dead. Its request cannot finish, so
// the drain does not wait for it: the wrapper is stopped at once, as a
// crash, and the unload is done.
func TestUnreachableWhileDraining(t *testing.T) {
	sw, crashes := wrappedSwapper(t, nil)
	l := acquire(t, sw, "w")
	defer l.Release()
	wrapper := pid(sw, "w")
	unloaded := make(chan error, 1)
	go func() { unloaded <- sw.Unload(context.Background(), "w", false) }()
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "w") == swapper.Draining }) {
		t.Fatalf("w is %v, want draining", state(sw, "w"))
	}
	refused := killServer(t, l)
	if !l.Unreachable(refused) {
		t.Fatal("a dead draining backend was not taken for dead")
	}
	select {
	case err := <-unloaded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unload still waits for a request on a dead backend")
	}
	if state(sw, "w") != swapper.Stopped {
		t.Errorf("after the unload: %v", state(sw, "w"))
	}
	// SIGKILL has reached the group; its processes are reaped a moment
	// later.
	if !mocktest.Eventually(5*time.Second, func() bool { return groupGone(wrapper) }) {
		t.Errorf("the wrapper's group (pid %d) outlived the crash", wrapper)
	}
	if n := len(crashes.all()); n != 1 {
		t.Errorf("%d crash events, want 1", n)
	}
}

// TestUnreachableWhileStopping: a report on a backend that is already
// being stopped changes nothing; the stop owns its end, and no crash is
// told.
func TestUnreachableWhileStopping(t *testing.T) {
	sw, crashes := wrappedSwapper(t, nil)
	l := acquire(t, sw, "stubborn")
	l.Release()
	unloaded := make(chan error, 1)
	go func() { unloaded <- sw.Unload(context.Background(), "stubborn", false) }()
	// It ignores SIGTERM: it stays Stopping until SIGKILL, a second on.
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "stubborn") == swapper.Stopping }) {
		t.Fatalf("stubborn is %v, want stopping", state(sw, "stubborn"))
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	if l.Unreachable(refused) {
		t.Error("a report during a stop was acted on")
	}
	if err := <-unloaded; err != nil {
		t.Fatal(err)
	}
	if n := len(crashes.all()); n != 0 {
		t.Errorf("%d crash events for a stop", n)
	}
}

// TestIdleCheckFindsADeadBackend runs on a fake clock: nobody sends a
// request, yet a backend whose server died is found by the idle check
// within MeasureInterval, and stopped as crashed, so its memory is free.
// A live idle backend is checked as often and left alone.
func TestIdleCheckFindsADeadBackend(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	sw, crashes := wrappedSwapper(t, func(o *swapper.Options) {
		o.Clock = fc
		o.TTLInterval = time.Second
		o.MeasureInterval = 5 * time.Second
	})
	alive := acquire(t, sw, "stubborn")
	alive.Release()
	l := acquire(t, sw, "w")
	l.Release()
	wrapper, other := pid(sw, "w"), pid(sw, "stubborn")
	killServer(t, l)

	// The janitor's timer is the only one: once it is armed again after
	// an Advance, the janitor's pass for that time is done.
	if !fc.BlockUntil(1, 5*time.Second) {
		t.Fatal("the janitor is not waiting on the clock")
	}
	fc.Advance(4 * time.Second)
	if !fc.BlockUntil(1, 5*time.Second) {
		t.Fatal("the janitor's pass did not end")
	}
	if state(sw, "w") != swapper.Ready {
		t.Fatalf("checked before MeasureInterval: %v", state(sw, "w"))
	}
	fc.Advance(time.Second)
	if !mocktest.Eventually(10*time.Second, func() bool { return state(sw, "w") == swapper.Stopped }) {
		t.Fatalf("the dead idle backend is %v", state(sw, "w"))
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return groupGone(wrapper) }) {
		t.Errorf("the wrapper's group (pid %d) outlived the crash", wrapper)
	}
	if state(sw, "stubborn") != swapper.Ready || pid(sw, "stubborn") != other {
		t.Errorf("the live backend beside it: %v, pid %d (was %d)", state(sw, "stubborn"), pid(sw, "stubborn"), other)
	}
	if got := crashes.all(); len(got) != 1 || got[0].Model != "w" {
		t.Errorf("crash events %+v", got)
	}
}
