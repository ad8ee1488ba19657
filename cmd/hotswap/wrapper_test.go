package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// wrapperConfig runs the backend through a wrapper script: the server
// beside another process (a log shipper, say), and a wait for both. When
// the server dies the wrapper lives on, so no exit is seen.
const wrapperConfig = `
ports: 30100-30199
stop_timeout: 2s
models:
  wrapped:
    cmd: [/bin/sh, -c, "MOCK -port ${PORT} -model ${MODEL} -latency ${LATENCY} & sleep 100000 & wait"]
`

// wrapperChat is one chat request's outcome: the pid of the mock that
// answered it, or the status and error code it failed with, or err if it
// got no answer.
type wrapperChat struct {
	pid    int
	status int
	code   string
	err    error
}

// chatWrapped sends one chat request for the wrapped model. It may run on
// any goroutine: it does not fail the test itself.
func chatWrapped(url string) wrapperChat {
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"wrapped","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		return wrapperChat{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return wrapperChat{status: resp.StatusCode, err: err}
	}
	if resp.StatusCode != 200 {
		return wrapperChat{status: resp.StatusCode, code: errCode(body)}
	}
	pid, err := strconv.Atoi(resp.Header.Get("X-Mock-Pid"))
	return wrapperChat{pid: pid, status: resp.StatusCode, err: err}
}

// killAndWaitRefused kills the mock server pid with SIGKILL and waits until
// its port refuses connections.
func killAndWaitRefused(t *testing.T, pid, port int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if !mocktest.Eventually(5*time.Second, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	}) {
		t.Fatalf("the killed server's port %d still takes connections", port)
	}
}

// backendInFlight is what the mock at port reports in flight; -1 if it
// cannot be asked. It is asked directly, not through hotswap, which would
// queue the question behind the request it is about.
func backendInFlight(port int) int {
	resp, err := http.Get("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/mock/stats")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		InFlight int `json:"in_flight"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return -1
	}
	return st.InFlight
}

// crashesOf reads hotswap_backend_crashes_total for model from /metrics.
func crashesOf(c client, model string) float64 {
	c.t.Helper()
	_, body, _ := c.do("GET", "/metrics", "")
	name := `hotswap_backend_crashes_total{model="` + model + `"} `
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestWrapperServerKilled is issue 26's case, against the hotswap binary:
// cmd is a wrapper script, and its server is killed with SIGKILL. At most
// one request fails after that (none, when the server dies between
// requests: the next request finds nothing listening and waits for a new
// backend instead), the requests after it are served by a new server, the
// dead one's wrapper is stopped with everything it started, and the crash
// is counted. A server that dies while nobody uses it is found too.
func TestWrapperServerKilled(t *testing.T) {
	b := build(t)
	cfg := writeConfig(t, b, strings.ReplaceAll(wrapperConfig, "${LATENCY}", "300ms"))
	_, url, logs := startLogged(t, b, cfg)
	c := client{t, url, ""}

	// Killed between requests: nobody fails.
	first := chatWrapped(url)
	if first.status != 200 || first.err != nil {
		t.Fatalf("first request: %+v", first)
	}
	old := c.running()["wrapped"]
	if old.Pid == first.pid {
		t.Fatalf("the wrapper %d answered itself: the config does not wrap", old.Pid)
	}
	killAndWaitRefused(t, first.pid, old.Port)
	if !mocktest.Alive(old.Pid) {
		t.Fatal("the wrapper died with its server: this test needs it alive")
	}
	var next []wrapperChat
	for range 4 {
		next = append(next, chatWrapped(url))
	}
	second := next[0].pid
	for i, r := range next {
		if r.status != 200 || r.err != nil || r.pid != second || r.pid == first.pid {
			t.Errorf("request %d after the kill: %+v (killed server %d): want all served by one new server", i, r, first.pid)
		}
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return syscall.Kill(-old.Pid, 0) == syscall.ESRCH }) {
		t.Errorf("the dead backend's wrapper group %d (its sleep) still runs", old.Pid)
	}
	if now := c.running()["wrapped"]; now.State != "ready" || now.Pid == old.Pid {
		t.Errorf("after the restart: %s, wrapper %d (was %d)", now.State, now.Pid, old.Pid)
	}

	// Killed under a request: that one may fail, the next ones may not.
	old = c.running()["wrapped"]
	inFlight := make(chan wrapperChat, 1)
	go func() { inFlight <- chatWrapped(url) }()
	if !mocktest.Eventually(5*time.Second, func() bool { return backendInFlight(old.Port) == 1 }) {
		t.Fatal("the request never reached the server")
	}
	killAndWaitRefused(t, second, old.Port)
	results := []wrapperChat{<-inFlight}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 3 { // at once, as clients would
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := chatWrapped(url)
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("killed under a request, then: %+v", results)
	failed := 0
	for _, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("no answer: %v", r.err)
		case r.status != 200:
			failed++
			if r.status != 502 || r.code == "" {
				t.Errorf("a failure that is not a clean 502: %+v", r)
			}
		case r.pid == second:
			t.Errorf("answered by the killed server %d", second)
		}
	}
	if failed > 1 {
		t.Errorf("%d requests failed after the server was killed, want at most 1: %+v", failed, results)
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return syscall.Kill(-old.Pid, 0) == syscall.ESRCH }) {
		t.Errorf("the dead backend's wrapper group %d (its sleep) still runs", old.Pid)
	}
	if got := crashesOf(c, "wrapped"); got != 2 {
		t.Errorf("hotswap_backend_crashes_total = %v, want 2", got)
	}
	if n := strings.Count(logs.String(), "backend stopped answering; stopping it as crashed"); n != 2 {
		t.Errorf("%d crash log lines, want 2", n)
	}

	// Killed, and nobody asks: the idle check (a connect to its port every
	// 5 s) finds it, so its memory does not stay counted as used.
	old = c.running()["wrapped"]
	last := results[len(results)-1].pid
	killAndWaitRefused(t, last, old.Port)
	if !mocktest.Eventually(15*time.Second, func() bool { _, loaded := c.running()["wrapped"]; return !loaded }) {
		t.Fatalf("a dead idle backend is still %q", c.running()["wrapped"].State)
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return syscall.Kill(-old.Pid, 0) == syscall.ESRCH }) {
		t.Errorf("the dead backend's wrapper group %d (its sleep) still runs", old.Pid)
	}
	if got := crashesOf(c, "wrapped"); got != 3 {
		t.Errorf("hotswap_backend_crashes_total = %v, want 3", got)
	}
}
