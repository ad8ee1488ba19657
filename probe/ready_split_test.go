package probe_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"

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
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(url + "/mock/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st mockStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestWaitForABackendThatSplitsItsWrites: a backend that writes its health
// answers' headers and body apart without TCP_NODELAY (the mock's
// -split-writes, as Python's http.server) is polled while it loads, 503
// after 503, and seen ready. Every check comes on a connection of its own
// and leaves none open: on a kept one, each check would wait out Linux's
// delayed ACK (see Check).
func TestWaitForABackendThatSplitsItsWrites(t *testing.T) {
	url := startMock(t, "-split-writes", "-startup", "300ms")
	ctx := context.Background()
	if err := (&probe.Readiness{}).Wait(ctx, url+"/health", probe.WaitOptions{Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	st := statsOf(t, url)
	if !st.Ready {
		t.Fatal("Wait returned before the backend was ready")
	}
	// 300ms of loading polled every 5ms: many checks, one connection each
	// (and this stats request's own).
	if st.Connections < 10 {
		t.Errorf("%d connections for the checks of a 300ms load: checks share connections", st.Connections)
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
