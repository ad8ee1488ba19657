package main

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Without -sleep-mode, vLLM's sleep endpoints are unknown, as they are in
// a vLLM without VLLM_SERVER_DEV_MODE.
func TestSleepModeOff(t *testing.T) {
	f := start(t)
	f.waitReady()
	for _, c := range []struct{ method, path string }{{"POST", "/sleep"}, {"POST", "/wake_up"}, {"GET", "/is_sleeping"}} {
		if resp, body := f.do(c.method, c.path, "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, body)
		}
	}
	if st := f.stats(); st.Sleeping || st.Sleeps != 0 {
		t.Errorf("stats %+v", st)
	}
}

func isSleeping(f *fixture) bool {
	f.t.Helper()
	resp, body := f.do("GET", "/is_sleeping", "", nil)
	var v struct {
		IsSleeping *bool `json:"is_sleeping"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil || v.IsSleeping == nil {
		f.t.Fatalf("/is_sleeping: %d %s", resp.StatusCode, body)
	}
	return *v.IsSleeping
}

func TestSleepWake(t *testing.T) {
	const wake = 150 * time.Millisecond
	f := start(t, "-sleep-mode", "-wake-time", wake.String(), "-hold", "4MiB")
	f.waitReady()
	if isSleeping(f) {
		t.Fatal("sleeping at start")
	}
	if resp, body := f.do("POST", "/sleep?level=3", "", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("level 3: %d %s", resp.StatusCode, body)
	}
	if resp, body := f.do("GET", "/sleep", "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /sleep: %d %s", resp.StatusCode, body)
	}
	// A wake while awake does nothing.
	if resp, _ := f.do("POST", "/wake_up", "", nil); resp.StatusCode != 200 || f.stats().Wakes != 0 {
		t.Errorf("wake while awake: %d, %+v", resp.StatusCode, f.stats())
	}

	if resp, body := f.do("POST", "/sleep?level=2", "", nil); resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("sleep: %d %q", resp.StatusCode, body)
	}
	if f.m.ballast != nil {
		t.Error("-hold memory still held while asleep")
	}
	// A second sleep does nothing.
	if resp, _ := f.do("POST", "/sleep", "", nil); resp.StatusCode != 200 {
		t.Errorf("second sleep: %d", resp.StatusCode)
	}
	st := f.stats()
	if !isSleeping(f) || !st.Sleeping || st.Sleeps != 1 || st.SleepLevel != 2 || st.SleptAt == 0 {
		t.Fatalf("after sleep: %+v", st)
	}
	// What vLLM answers while asleep: health, the model list, stats.
	for _, path := range []string{"/health", "/v1/models"} {
		if resp, body := f.do("GET", path, "", nil); resp.StatusCode != 200 {
			t.Errorf("%s while asleep: %d %s", path, resp.StatusCode, body)
		}
	}

	// A model POST while asleep is parked until the wake.
	type answer struct {
		status int
		at     int64
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := f.client.Post(f.url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			answered <- answer{status: -1}
			return
		}
		resp.Body.Close()
		answered <- answer{resp.StatusCode, time.Now().UnixNano()}
	}()
	eventually(t, "the request parked", func() bool { return f.stats().Parked == 1 })
	select {
	case a := <-answered:
		t.Fatalf("answered %d while asleep", a.status)
	case <-time.After(50 * time.Millisecond):
	}
	if st := f.stats(); st.Requests != 0 || st.InFlight != 0 {
		t.Errorf("a parked request counted: %+v", st)
	}

	if resp, body := f.do("POST", "/wake_up", "", nil); resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("wake_up: %d %q", resp.StatusCode, body)
	}
	st = f.stats()
	if isSleeping(f) || st.Sleeping || st.Wakes != 1 || f.m.ballast == nil {
		t.Fatalf("after wake: %+v", st)
	}
	if !(st.SleptAt <= st.WakeStartedAt && st.WakeStartedAt+int64(wake) <= st.WokeAt) {
		t.Errorf("slept %d, wake began %d and ended %d: want a wake of at least %s", st.SleptAt, st.WakeStartedAt, st.WokeAt, wake)
	}
	a := <-answered
	if a.status != 200 || a.at < st.WokeAt {
		t.Errorf("parked request: %d at %d, woke at %d", a.status, a.at, st.WokeAt)
	}
	if st := f.stats(); st.Requests != 1 {
		t.Errorf("requests %d after the wake", st.Requests)
	}
}

// A client that gives up on a parked request is let go.
func TestSleepParkedClientLeaves(t *testing.T) {
	f := start(t, "-sleep-mode")
	f.waitReady()
	f.do("POST", "/sleep", "", nil)
	client := &http.Client{Transport: &http.Transport{}, Timeout: 100 * time.Millisecond}
	defer client.CloseIdleConnections()
	if resp, err := client.Post(f.url+"/v1/embeddings", "application/json", strings.NewReader(`{"input":"x"}`)); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %d while asleep", resp.StatusCode)
	}
	eventually(t, "the mock to see the client leave", func() bool { return f.stats().ParkedLeft == 1 })
	f.do("POST", "/wake_up", "", nil)
	if st := f.stats(); st.Parked != 1 || st.ParkedLeft != 1 || st.Requests != 0 || st.Sleeping {
		t.Errorf("stats %+v", st)
	}
}

func TestSleepWhileLoading(t *testing.T) {
	f := start(t, "-sleep-mode", "-startup", "1h")
	if resp, body := f.do("POST", "/sleep", "", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("sleep while loading: %d %s", resp.StatusCode, body)
	}
}

func TestSleepFlags(t *testing.T) {
	if _, err := parseFlags([]string{"-port", "1", "-wake-time", "-1s"}, &syncBuffer{}); err == nil {
		t.Error("a negative -wake-time accepted")
	}
}

// rss reads a process's resident memory, in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no VmRSS in\n%s", status)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// TestProcessSleepRSS checks that sleeping really gives the -hold memory
// back, and waking really takes it again, as hotswap's memory accounting
// will see them.
func TestProcessSleepRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	const hold = 64 << 20
	p := startProc(t, "-listen", "127.0.0.1:0", "-hold", "64MiB", "-sleep-mode", "-wake-time", "10ms")
	addr := "http://" + p.addr()
	post := func(path string) {
		t.Helper()
		resp, err := http.Post(addr+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	pid := p.cmd.Process.Pid
	awake := rss(t, pid)
	if awake < hold {
		t.Fatalf("RSS %d before sleeping, want at least %d", awake, hold)
	}
	post("/sleep?level=1")
	asleep := rss(t, pid)
	if asleep > awake-hold*3/4 {
		t.Errorf("RSS %d MiB asleep, %d MiB awake: want it down by about %d MiB", asleep>>20, awake>>20, hold>>20)
	}
	post("/wake_up")
	if woken := rss(t, pid); woken < asleep+hold*3/4 {
		t.Errorf("RSS %d MiB after waking, %d MiB asleep: want it up by about %d MiB", woken>>20, asleep>>20, hold>>20)
	}
}

// TestSleepFailures: -fail-sleep answers /sleep with 500 and stays awake;
// -fail-wake answers /wake_up with 500 and stays asleep.
func TestSleepFailures(t *testing.T) {
	f := start(t, "-sleep-mode", "-fail-sleep")
	f.waitReady()
	if resp, body := f.do("POST", "/sleep", "", nil); resp.StatusCode != 500 || !strings.Contains(string(body), "fail-sleep") {
		t.Errorf("sleep with -fail-sleep: %d %s", resp.StatusCode, body)
	}
	if isSleeping(f) || f.stats().Sleeps != 0 {
		t.Errorf("asleep after a failed sleep: %+v", f.stats())
	}

	g := start(t, "-sleep-mode", "-fail-wake")
	g.waitReady()
	if resp, body := g.do("POST", "/sleep", "", nil); resp.StatusCode != 200 {
		t.Fatalf("sleep: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.do("POST", "/wake_up", "", nil); resp.StatusCode != 500 || !strings.Contains(string(body), "fail-wake") {
		t.Errorf("wake with -fail-wake: %d %s", resp.StatusCode, body)
	}
	if !isSleeping(g) || g.stats().Wakes != 0 {
		t.Errorf("awake after a failed wake: %+v", g.stats())
	}
}
