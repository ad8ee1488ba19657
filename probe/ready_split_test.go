package probe_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
)

// startMock runs the mock backend with args on a free port until the test
// ends, and returns its URL.
func startMock(t *testing.T, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(mockExe, append([]string{"-port", strconv.Itoa(port), "-quiet"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

// mockStats is the part of the mock's /mock/stats these tests read.
type mockStats struct {
	Ready       bool `json:"ready"`
	Connections int  `json:"connections"`
	OpenConns   int  `json:"open_connections"`
}

// statsOf asks the mock at url for its stats, on a connection of its own.
func statsOf(t *testing.T, url string) mockStats {
	t.Helper()
	st, err := tryStats(url)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func tryStats(url string) (mockStats, error) {
	var st mockStats
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(url + "/mock/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// TestWaitForABackendThatSplitsItsWrites: a backend that writes its health
// answers' headers and body apart without TCP_NODELAY (the mock's
// -split-writes, as Python's http.server) is polled while it loads, 503
// after 503, and seen ready. Every check comes on a connection of its own
// and leaves none open: on a kept one, each check would wait out Linux's
// delayed ACK (see Check). The polls are the test's, on a fake clock, so
// that their number is known whatever the machine's speed; the load is
// the mock's, in real time.
func TestWaitForABackendThatSplitsItsWrites(t *testing.T) {
	url := startMock(t, "-split-writes", "-startup", "300ms")
	ctx := context.Background()
	// Listening (the stats answer while it loads), with this request's
	// connection counted.
	var before mockStats
	if !mocktest.Eventually(10*time.Second, func() bool {
		st, err := tryStats(url)
		before = st
		return err == nil
	}) {
		t.Fatal("the mock does not listen")
	}
	var dials atomic.Int64
	client := &fasthttp.Client{Dial: func(addr string) (net.Conn, error) {
		dials.Add(1)
		return fasthttp.Dial(addr)
	}}
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := &probe.Readiness{Client: client, Clock: fc}
	done := make(chan error, 1)
	go func() { done <- r.Wait(ctx, url+"/health", probe.WaitOptions{Timeout: time.Hour}) }()
	// The first check is made at once; each move of the clock by an
	// interval, once Wait waits for it, brings one more.
	if !mocktest.Eventually(10*time.Second, func() bool { return dials.Load() >= 1 }) {
		t.Fatal("no first check")
	}
	checks := 1
	for {
		if !mocktest.Eventually(10*time.Second, func() bool { return fc.Timers() == 1 || len(done) == 1 }) {
			t.Fatalf("after %d checks Wait neither waits for the next nor has returned", checks)
		}
		if len(done) == 1 {
			break
		}
		fc.Advance(probe.DefaultInterval)
		checks++
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := statsOf(t, url)
	if !st.Ready {
		t.Fatal("Wait returned before the backend was ready")
	}
	if checks < 2 {
		t.Fatalf("%d checks: the backend was ready at the first, so nothing was polled while it loaded", checks)
	}
	// One connection each, and this stats request's own.
	if n := st.Connections - before.Connections; n != checks+1 || dials.Load() != int64(checks) {
		t.Errorf("%d checks came on %d connections (%d dialled): checks share connections", checks, n-1, dials.Load())
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return statsOf(t, url).OpenConns == 1 }) {
		t.Errorf("checks left connections open: %+v", statsOf(t, url))
	}
	for i := range 3 {
		if err := (&probe.Readiness{}).Check(ctx, url+"/health"); err != nil {
			t.Fatalf("check %d of a ready backend: %v", i, err)
		}
	}
}
