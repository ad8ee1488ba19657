package proxy_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

const unreachableConfig = `
ports: 30000-30099
stop_timeout: 2s
models:
  wrapped:
    # The server beside another process, and a wait for both: killing the
    # server leaves the wrapper running, so no exit is seen.
    cmd: [/bin/sh, -c, "MOCK -port ${PORT} -model wrapped -progress-interval 0 & sleep 100000 & wait"]
  crash-second:
    cmd: MOCK -port ${PORT} -model ${MODEL} -crash-after 2 -progress-interval 0
`

// servedBy is the pid of the mock process that answered r.
func servedBy(t *testing.T, r response) int {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	pid, err := strconv.Atoi(r.header.Get("X-Mock-Pid"))
	if err != nil {
		t.Fatalf("no X-Mock-Pid: %v", err)
	}
	return pid
}

// refuses waits until nothing listens at upstream any more.
func refuses(t *testing.T, upstream string) {
	t.Helper()
	addr := strings.TrimPrefix(upstream, "http://")
	if !mocktest.Eventually(5*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	}) {
		t.Fatalf("%s still takes connections", addr)
	}
}

// TestServerBehindAWrapperDiesIdle: the server behind a wrapper script is
// killed between requests. The next request finds nothing listening on
// the backend's port; it never reached the backend, so instead of failing
// it waits for a new one, which hotswap starts in place of the dead one
// (whose wrapper is stopped).
func TestServerBehindAWrapperDiesIdle(t *testing.T) {
	s := newStack(t, unreachableConfig)
	first := servedBy(t, s.chat("wrapped", "hi"))
	st := s.status("wrapped")
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	refuses(t, st.Upstream)
	if !mocktest.Alive(st.Pid) {
		t.Fatal("the wrapper died with its server: this test needs it alive")
	}

	second := servedBy(t, s.chat("wrapped", "again"))
	if second == first {
		t.Errorf("served by the killed server %d", first)
	}
	if n := s.starts.Starts(); n != 2 {
		t.Errorf("%d starts, want 2", n)
	}
	if now := s.status("wrapped"); now.State != swapper.Ready || now.Pid == st.Pid {
		t.Errorf("after the restart: %v, wrapper %d (was %d)", now.State, now.Pid, st.Pid)
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return syscall.Kill(-st.Pid, 0) == syscall.ESRCH }) {
		t.Errorf("the dead backend's wrapper group (pid %d) still runs", st.Pid)
	}
	if n := s.logs.FilterMessage("backend stopped answering; stopping it as crashed").Len(); n != 1 {
		t.Errorf("%d crash log lines, want 1", n)
	}
}

// TestRequestThatReachedADyingBackendIsNotResent: a backend dies of the
// request it was sent, on a kept-alive connection. hotswap sends it once
// more on a new connection (the backend might only have closed the old
// one) and is refused: the backend is dead. The request went out once,
// so the backend may have died of it: it gets one clean error, and is not
// sent to a new backend, which it might kill too.
func TestRequestThatReachedADyingBackendIsNotResent(t *testing.T) {
	s := newStack(t, unreachableConfig)
	servedBy(t, s.chat("crash-second", "first")) // leaves a kept-alive connection
	r := s.chat("crash-second", "second")
	if r.status != 502 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if _, _, code := r.apiError(t); code != "backend_died" {
		t.Errorf("code %q", code)
	}
	if n := s.starts.Starts(); n != 1 {
		t.Errorf("%d starts: the request that killed the backend was sent to another", n)
	}
	// Its refused connection was reported, but the backend had exited:
	// the crash is told as an exit, with its status.
	if !mocktest.Eventually(5*time.Second, func() bool { return s.status("crash-second").State == swapper.Stopped }) {
		t.Fatalf("crash not noticed: %+v", s.status("crash-second"))
	}
	if exited, dead := s.logs.FilterMessage("backend exited unexpectedly").Len(),
		s.logs.FilterMessage("backend stopped answering; stopping it as crashed").Len(); exited != 1 || dead != 0 {
		t.Errorf("%d exits and %d backends found dead logged, want the exit alone", exited, dead)
	}
	servedBy(t, s.chat("crash-second", "third"))
}
