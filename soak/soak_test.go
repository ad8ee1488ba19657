package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// The soak's shape: how many of each client.
const (
	clients    = 14 // send requests, check answers; some hang up, some read slowly
	nonReaders = 2  // open streams and never read them
)

// soakDuration is $SOAK, a Go duration; 15s when unset, so that make
// test runs a short soak.
func soakDuration(t *testing.T) time.Duration {
	s := os.Getenv("SOAK")
	if s == "" {
		return 15 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("SOAK=%q: want a Go duration, such as 60s or 10m", s)
	}
	return d
}

// seed is $SOAK_SEED, or 1: the same seed draws the same models and
// habits for each client (the timing, and so the interleaving, varies).
func seed(t *testing.T) uint64 {
	s := os.Getenv("SOAK_SEED")
	if s == "" {
		return 1
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("SOAK_SEED=%q: want a number", s)
	}
	return n
}

// TestSoak runs hotswap under chaos for $SOAK and fails on any violation
// of its invariants, checked continuously while it runs (RELIABILITY.md):
//
//  1. every request gets exactly one answer, well-formed, in time;
//  2. the backends' summed RSS never exceeds limit_ram;
//  3. no backend process outlives its model, or hotswap (SIGTERM or
//     SIGKILL);
//  4. hotswap's goroutines and RSS come back to their baseline when idle;
//  5. /health keeps answering within 100 ms.
func TestSoak(t *testing.T) {
	dur, seed := soakDuration(t), seed(t)
	race := len(mocktest.RaceFlags()) > 0 // hotswap is built with the race detector
	sab := sabotages(t)
	phase := time.Now()
	took := func(what string) {
		t.Logf("%s took %v", what, time.Since(phase).Truncate(time.Millisecond))
		phase = time.Now()
	}
	b := build(t)
	took("building")
	// Registered first, so run last: whatever is left is killed.
	t.Cleanup(func() {
		if left := mocktest.Leftovers(b.mock, 5*time.Second); len(left) > 0 {
			t.Errorf("mock backends left running at the end: %v", left)
		}
	})
	cfg := filepath.Join(t.TempDir(), "hotswap.yaml")
	if err := writeConfig(cfg, b.mock, 0, sab); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	// hotswap's logs are kept when the soak fails (or SOAK_KEEP_LOGS is set).
	logs, err := os.MkdirTemp("", "hotswap-soak-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SOAK_KEEP_LOGS") != "" {
			t.Logf("hotswap's logs are in %s", logs)
		} else {
			os.RemoveAll(logs)
		}
	})
	h := launch(t, b.hotswap, cfg, state, filepath.Join(logs, "hotswap.log"))
	rec := newRecorder(t)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	c := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	// Invariant 4's baseline: hotswap started, nothing loaded yet.
	_, baseG, err := h.goroutines(c)
	if err != nil {
		t.Fatal(err)
	}
	baseRSS := h.rss()
	tr.CloseIdleConnections()

	mon := &monitors{rec: rec, mock: b.mock, url: h.url, pid: h.cmd.Process.Pid}
	monCtx, stopMonitors := context.WithCancel(context.Background())
	var monWG sync.WaitGroup
	monWG.Go(func() { mon.watchMemory(monCtx) })
	monWG.Go(func() { mon.watchProcesses(monCtx) })
	monWG.Go(func() { mon.probeHealth(monCtx) })
	defer func() { stopMonitors(); monWG.Wait() }()

	tal := newTally()
	l := newLoad(h.url, c, rec, tal)
	op := &operator{l: l, path: cfg, mock: b.mock, rng: rand.New(rand.NewPCG(seed, 1000)), sab: sab}
	if sab["deadline"] {
		l.deadline = time.Second
	}
	if sab["stall"] {
		l.ids, l.cum = []string{"broken", "badflag"}, []float64{1, 2}
	}
	t.Logf("soak: %v, seed %d, %d clients + %d that never read, hotswap %s (race detector: %v)",
		dur, seed, clients, nonReaders, h.url, race)

	loadCtx, stopLoad := context.WithTimeout(context.Background(), dur)
	defer stopLoad()
	var wg sync.WaitGroup
	for i := range clients {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		wg.Go(func() { l.client(loadCtx, rng) })
	}
	for i := range nonReaders {
		rng := rand.New(rand.NewPCG(seed, uint64(100+i)))
		wg.Go(func() { l.nonReader(loadCtx, rng) })
	}
	wg.Go(func() { op.run(loadCtx) })
	wg.Go(func() { mon.watchProgress(loadCtx, tal) })
	sab.duringLoad(t, h, b.mock, min(3*time.Second, dur/3))
	began := time.Now()
	wg.Wait() // the requests in flight at the end are answered, or time out: each has its deadline
	loadTook := time.Since(began)
	took("the load")

	// Each kind of chaos must have happened; what the draw left out is
	// made to happen now, once.
	chaos := ensureChaos(t, h, l, op, rec)
	took("making the missing chaos happen")

	m, err := scrape(c, h.url)
	if err != nil {
		t.Errorf("metrics at the end: %v", err)
	}

	// Invariant 4: back to idle. Every model unloaded, the client's
	// connections closed, hotswap must come back to its baseline.
	unloadAll(t, op, mon, rec)
	tr.CloseIdleConnections()
	if sab["idle"] {
		defer holdConns(t, h.url, 20)()
	}
	margin := rssMargin(race)
	endAll, endG, endRSS, ok := idle(h, c, baseG, baseRSS, margin, 15*time.Second)
	// What is left, kept with the logs, for whoever must tell a leak.
	if _, body, err := call(context.Background(), c, "GET", h.pprof+"/debug/pprof/goroutine?debug=1", ""); err == nil {
		_ = os.WriteFile(filepath.Join(logs, "goroutines-idle.txt"), body, 0o644)
	}
	if !ok {
		rec.violate("not back to idle", "goroutines %d (%d in all; baseline %d, allowed +10), RSS %s (baseline %s, allowed +%s), 15s after the load",
			endG, endAll, baseG, mib(endRSS), mib(baseRSS), mib(margin))
	}

	took("coming back to idle")
	stopMonitors()
	monWG.Wait()
	select {
	case <-h.exited:
		rec.violate("hotswap exited", "during the soak: %v\n%s", h.err, h.log.tailText(30))
	default:
	}

	// Invariant 3 at the end: after SIGTERM, no backend is left.
	if err := h.stop(3*time.Second + stopTimeout + 10*time.Second); err != nil {
		rec.violate("hotswap's SIGTERM", "%v", err)
	}
	if left := mocktest.Leftovers(b.mock, stopTimeout+3*time.Second); len(left) > 0 {
		rec.violate("backend outlived hotswap", "after SIGTERM: %v", left)
	}
	if panics := h.log.get(func(w *logWatch) int { return len(w.panics) }); panics > 0 {
		rec.violate("hotswap panicked", "%d panic(s):\n%s", panics, h.log.tailText(60))
	}

	// And after SIGKILL, with backends loaded (the stubborn one too),
	// the guard takes them along.
	took("stopping hotswap")
	killPhase(t, b, cfg, state, filepath.Join(logs, "hotswap-killed.log"), rec, sab)
	took("the kill phase")

	summary(t, dur, loadTook, seed, race, tal, mon, m, h, chaos, baseG, endG, endAll, baseRSS, endRSS, rec)
	rec.fail()
}

// unloadAll unloads every model and waits for their processes to be gone.
// A backend still alive stop_timeout + 3s later must be one that hotswap
// reports running: loaded after the unload by a command still in flight
// (a mode switch or restore the operator gave up waiting for); then it is
// unloaded again. One that hotswap does not report has outlived its model.
func unloadAll(t *testing.T, op *operator, mon *monitors, rec *recorder) {
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	for try := 1; ; try++ {
		if status, _ := op.do("unload-all"); status != 200 {
			rec.violate("not back to idle", "POST /admin/unload answered %d", status)
		}
		if mocktest.Eventually(stopTimeout+3*time.Second, func() bool { return len(scanMocks(mon.mock)) == 0 }) {
			return
		}
		left := scanMocks(mon.mock)
		running, err := mon.running(context.Background(), c)
		if err != nil {
			rec.violate("not back to idle", "GET /admin/running: %v", err)
			return
		}
		var unreported []mockProc
		for _, p := range left {
			if pid, ok := running[p.model]; !ok || (pid != 0 && pid != p.pid) {
				unreported = append(unreported, p)
			}
		}
		if len(unreported) > 0 {
			rec.violate("backend outlived its model", "alive %v after POST /admin/unload, not reported running: %v (running: %v)",
				stopTimeout+3*time.Second, unreported, running)
			return
		}
		if try == 3 {
			rec.violate("not back to idle", "models still loaded after %d unloads: %v", try, running)
			return
		}
		t.Logf("loaded after POST /admin/unload, by a command still in flight: %v; unloading again", left)
	}
}

// killPhase starts hotswap again, loads two models and SIGKILLs it:
// their processes, and the guard, must be gone within stop_timeout + 3s.
func killPhase(t *testing.T, b binaries, cfg, state, logFile string, rec *recorder, sab sabotage) {
	h := launch(t, b.hotswap, cfg, state, logFile)
	c := &http.Client{Timeout: answerDeadline}
	defer c.CloseIdleConnections()
	for _, model := range []string{"stubborn", "slow"} {
		ctx, cancel := context.WithTimeout(context.Background(), answerDeadline)
		status, body, err := call(ctx, c, "POST", h.url+"/admin/models/"+model+"/load", "")
		cancel()
		if err != nil || status != 200 {
			t.Errorf("kill phase: loading %s: %d %s %v", model, status, body, err)
		}
	}
	pids := scanMocks(b.mock)
	if len(pids) != 2 {
		t.Errorf("kill phase: want 2 backends loaded, have %v", pids)
	}
	if sab["leftover"] {
		impostor(t, b.mock, "slow")
	}
	h.kill()
	if left := mocktest.Leftovers(b.mock, stopTimeout+3*time.Second); len(left) > 0 {
		rec.violate("backend outlived hotswap", "after SIGKILL: %v (loaded were %v)", left, pids)
	}
	if left := mocktest.Leftovers(b.hotswap, stopTimeout+3*time.Second); len(left) > 0 {
		rec.violate("backend outlived hotswap", "hotswap processes (the guard) alive after SIGKILL: %v", left)
	}
	t.Logf("kill phase: SIGKILLed hotswap with %v loaded; none left", pids)
}

// chaos is what happened of each kind of chaos, by name.
type chaos []struct {
	name    string
	n       int
	made    bool // it had not happened under the load, and was made to
	skipped bool // it had not, and was not made to: the control plane was stuck
}

// ensureChaos checks that each kind of chaos happened at least once, and
// makes each that did not happen happen, once, deterministically.
func ensureChaos(t *testing.T, h *hotswap, l *load, op *operator, rec *recorder) chaos {
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	metric := func(name string, labels ...string) int {
		m, err := scrape(c, h.url)
		if err != nil {
			t.Errorf("metrics: %v", err)
			return 0
		}
		return int(m.sum(name, labels...))
	}
	rng := rand.New(rand.NewPCG(7, 7))
	var out chaos
	// A mode switch, restore or reload that got no answer may hold the
	// controller (one of them at a time): the next would wait as long.
	// That is a violation already; asking again only adds 45 s each.
	stuck := rec.count("admin command got no answer") > 0
	kind := func(name string, count func() int, provoke func(), controller bool) {
		n, made, skipped := count(), false, false
		switch {
		case n > 0:
		case controller && stuck:
			skipped = true
		default:
			provoke()
			n, made = count(), true
			if n == 0 {
				t.Errorf("chaos that never happened, even when made to: %s", name)
			}
		}
		out = append(out, struct {
			name          string
			n             int
			made, skipped bool
		}{name, n, made, skipped})
	}
	waitFor := func(within time.Duration, cond func() bool) {
		mocktest.Eventually(within, cond)
	}

	// A backend crashed while serving, and its model answered again after.
	crashSurvived := func() int {
		first := h.log.firstCrash()
		if first.IsZero() || !l.tally.lastOK("crashy").After(first) {
			return 0
		}
		return h.log.get(func(w *logWatch) int { return len(w.crashes) })
	}
	kind("crash survived", crashSurvived, func() {
		for i := 0; i < 20 && crashSurvived() == 0; i++ {
			l.do("crashy", false, 0, false, rng)
		}
	}, false)
	// A stop that needed SIGKILL after stop_timeout.
	slowStops := func() int { return h.log.get(func(w *logWatch) int { return w.slowStops["stubborn"] }) }
	kind("SIGTERM ignored, SIGKILL after stop_timeout", slowStops, func() {
		op.do("load stubborn")
		op.do("unload stubborn")
		waitFor(5*time.Second, func() bool { return slowStops() > 0 })
	}, false)
	// Swaps: a model evicted to make room for another.
	kind("eviction to make room", func() int { return metric("hotswap_evictions_total", `reason="making_room"`) }, func() {
		for _, m := range []string{"stubborn", "sloth", "brief"} {
			op.do("load " + m)
		}
	}, false)
	// TTL expiries, and requests racing them. Under the load, an idle
	// model is the first to go when memory is wanted, so brief seldom
	// lives out its ttl there. Here it does, twice, and a request for it
	// comes at a random moment of the second in which the janitor (which
	// looks every second) unloads it: before, during or after its stop.
	// Each must be answered like any other (invariant 1).
	ttl := func() int { return metric("hotswap_evictions_total", `reason="ttl"`) }
	before := ttl()
	for range 2 {
		op.do("load brief")
		waitFor(5*time.Second, func() bool { left, ok := ttlLeft(c, h.url, "brief"); return !ok || left <= 0 })
		pause := time.NewTimer(time.Duration(rng.IntN(1000)) * time.Millisecond)
		<-pause.C
		l.do("brief", rng.IntN(2) == 0, 0, false, rng)
	}
	waitFor(5*time.Second, func() bool { return ttl() > before })
	kind("TTL expiry", ttl, func() {}, false)
	// A start that failed, answered 503 backend_start_failed.
	failed := func() int {
		return l.tally.get(func(t *tally) int {
			n := 0
			for k, v := range t.byAnswer {
				if strings.Contains(k, "backend_start_failed") {
					n += v
				}
			}
			return n
		})
	}
	kind("failed start answered 503 backend_start_failed", failed, func() { l.do("badflag", false, 0, false, rng) }, false)
	kind("client hung up", func() int { return l.tally.get(func(t *tally) int { return t.hungUp }) }, func() {
		l.do("slow", true, 300*time.Millisecond, false, rng)
	}, false)
	kind("stream never read", func() int { return l.tally.get(func(t *tally) int { return t.nonReaders }) }, func() {
		l.holdUnread("slow", time.Second)
	}, false)
	kind("stream read slowly", func() int { return l.tally.get(func(t *tally) int { return t.slowReads }) }, func() {
		l.do("closer", true, 0, true, rng)
	}, false)
	kind("reload", func() int { return l.tally.adminOK("reload") }, func() { op.do("reload") }, true)
	kind("mode switch", func() int { return l.tally.adminOK("mode") }, func() { op.do("mode chat") }, true)
	kind("mode restore", func() int { return l.tally.adminOK("restore") }, func() { op.do("restore") }, true)
	kind("load", func() int { return l.tally.adminOK("load") }, func() { op.do("load closer") }, false)
	kind("unload", func() int { return l.tally.adminOK("unload") }, func() { op.do("unload closer") }, false)
	return out
}

// ttlLeft is how long model may stay idle before its ttl unloads it, as
// /admin/running says; false when it is not running.
func ttlLeft(c *http.Client, url, model string) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	status, body, err := call(ctx, c, "GET", url+"/admin/running", "")
	if err != nil || status != 200 {
		return 0, false
	}
	var list []struct {
		Model   string   `json:"model"`
		State   string   `json:"state"`
		TTLLeft *float64 `json:"ttl_left_seconds"`
	}
	if json.Unmarshal(body, &list) != nil {
		return 0, false
	}
	for _, r := range list {
		if r.Model == model && r.State == "ready" && r.TTLLeft != nil {
			return time.Duration(*r.TTLLeft * float64(time.Second)), true
		}
	}
	return 0, false
}

// summary logs the soak's figures.
func summary(t *testing.T, dur, loadTook time.Duration, seed uint64, race bool, tal *tally, mon *monitors, m metrics, h *hotswap,
	ch chaos, baseG, endG, endAll int, baseRSS, endRSS int64, rec *recorder) {
	tal.mu.Lock()
	defer tal.mu.Unlock()
	mon.mu.Lock()
	defer mon.mu.Unlock()
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("soak summary (SOAK=%v, seed %d; the load ran %v, to the last answer)", dur, seed, loadTook.Truncate(time.Millisecond))
	p("  requests: %d sent, %d answered, %d hung up by the client, %d streams held unread", tal.sent, tal.answered, tal.hungUp, tal.nonReaders)
	p("  answers: %s", counts(tal.byAnswer))
	p("  streams: %d ended with [DONE] (%d read slowly), %d with an error event", tal.streamsOK, tal.slowReads, tal.streamsErr)
	p("  admin: %s", counts(tal.admin))
	if m != nil {
		p("  swaps (backend starts): %d; evictions: %d making room, %d ttl, %d unload, %d other; crashes: %d; failed starts: %d",
			int(m.sum("hotswap_backend_starts_total")), int(m.sum("hotswap_evictions_total", `reason="making_room"`)),
			int(m.sum("hotswap_evictions_total", `reason="ttl"`)), int(m.sum("hotswap_evictions_total", `reason="unload"`)),
			int(m.sum("hotswap_evictions_total", `reason="other"`)), int(m.sum("hotswap_backend_crashes_total")),
			int(m.sum("hotswap_backend_start_failures_total")))
	}
	var cs []string
	for _, c := range ch {
		s := fmt.Sprintf("%s: %d", c.name, c.n)
		switch {
		case c.made:
			s += " (made to happen)"
		case c.skipped:
			s += " (not made to: a control-plane command is stuck)"
		}
		cs = append(cs, s)
	}
	p("  chaos: %s", strings.Join(cs, ", "))
	p("  memory: max summed backend RSS %s of limit_ram %s (at +%v: %v); %d samples, longest gap %v; at most %d backends alive at once",
		mib(mon.memMax), mib(limitRAM), mon.memMaxAt, mon.memMaxWhat, mon.memSamples, mon.memGap.Truncate(time.Millisecond), mon.maxLive)
	p("  processes: %d checks against /admin/running (%d unanswered)", mon.procChecks, mon.runningErrs)
	p("  progress: the longest the load went without a request answered 200: %v", mon.longestStall.Truncate(time.Millisecond))
	p("  /health: %d probes, max latency %v, %d slow or failed (%d failed), longest failed run %d",
		mon.healthN, mon.healthMax.Truncate(time.Microsecond), mon.healthSlow, mon.healthFailed, mon.healthStreak)
	p("  hotswap: goroutines %d at start, %d idle at the end (%d with fasthttp's idle workers and cleaners); RSS %s at start, %s at most, %s idle at the end (%+.1fMiB); %d log lines",
		baseG, endG, endAll, mib(baseRSS), mib(mon.hotswapRSS), mib(endRSS), float64(endRSS-baseRSS)/(1<<20), h.log.get(func(w *logWatch) int { return w.lines }))
	p("  data races in hotswap's log: %d (built with the race detector: %v)", h.log.races(), race)
	p("  violations: %s", rec.summary())
	t.Log(b.String())
}
