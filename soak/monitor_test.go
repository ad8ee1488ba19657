package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The monitors check the invariants while the soak runs, each on its own
// goroutine and clock, independently of the load.

// mockProc is a live mock backend process.
type mockProc struct {
	pid   int
	model string // its -model argument
	rss   int64
}

func (p mockProc) String() string { return fmt.Sprintf("%s/%d:%s", p.model, p.pid, mib(p.rss)) }

// scanMocks lists the live (not zombie) processes running the mock
// binary at exe, with their model and resident memory: one pass over
// /proc, cheap enough to run every 50 ms.
func scanMocks(exe string) []mockProc {
	entries, _ := os.ReadDir("/proc")
	var out []mockProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		target, err := os.Readlink(filepath.Join(dir, "exe"))
		if err != nil || strings.TrimSuffix(target, " (deleted)") != exe {
			continue
		}
		status, err := os.ReadFile(filepath.Join(dir, "status"))
		if err != nil {
			continue
		}
		zombie, rss, ok := statusFields(status)
		if !ok || zombie {
			continue
		}
		p := mockProc{pid: pid, rss: rss}
		if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
			args := bytes.Split(cmdline, []byte{0})
			for i := 0; i+1 < len(args); i++ {
				if string(args[i]) == "-model" {
					p.model = string(args[i+1])
				}
			}
		}
		out = append(out, p)
	}
	return out
}

func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

// monitors holds what the invariant checks measured, for the summary.
type monitors struct {
	rec  *recorder
	mock string // the mock binary: its processes are the backends
	url  string // hotswap
	pid  int    // hotswap's

	mu sync.Mutex
	// invariant 2: the memory budget
	memSamples int
	memMax     int64
	memMaxAt   time.Duration
	memMaxWhat []mockProc
	memGap     time.Duration // the longest time between two samples
	hotswapRSS int64         // hotswap's own, at its highest
	// invariant 3: no process outlives its model
	procChecks  int
	runningErrs int
	maxLive     int // the most backends alive at once
	// invariant 5: /health
	healthN, healthSlow, healthFailed int
	healthMax                         time.Duration
	healthStreak                      int // the longest run of failed probes
	// invariant 1's liveness: the longest time the load went without a 200
	longestStall time.Duration
}

// watchMemory samples, every 50 ms, the summed RSS of every live backend
// and compares it with limit_ram: one sample above is a violation.
func (m *monitors) watchMemory(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		procs := scanMocks(m.mock)
		now := time.Now()
		var sum int64
		for _, p := range procs {
			sum += p.rss
		}
		m.mu.Lock()
		m.memSamples++
		m.memGap = max(m.memGap, now.Sub(last))
		last = now
		if sum > m.memMax {
			m.memMax, m.memMaxAt, m.memMaxWhat = sum, m.rec.since(), procs
		}
		m.maxLive = max(m.maxLive, len(procs))
		if m.memSamples%20 == 0 {
			m.hotswapRSS = max(m.hotswapRSS, procRSS(m.pid))
		}
		m.mu.Unlock()
		if sum > limitRAM {
			m.rec.violate("memory budget exceeded", "the backends' summed RSS is %s, over limit_ram %s: %v",
				mib(sum), mib(limitRAM), procs)
		}
	}
}

// watchProcesses compares, every 200 ms, the live backend processes
// with what hotswap reports running. A process whose model hotswap does
// not report (or reports with another pid) for longer than stop_timeout
// + 3 s has outlived its model; two processes of one model for more than
// 3 s is one too many.
func (m *monitors) watchProcesses(ctx context.Context) {
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	orphanSince := map[int]time.Time{}
	dupSince := map[string]time.Time{}
	reported := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// /proc first, then hotswap: a process found was spawned before
		// hotswap was asked, so hotswap knows of it unless it has gone.
		procs := scanMocks(m.mock)
		running, err := m.running(ctx, c)
		if err != nil {
			if ctx.Err() == nil {
				m.mu.Lock()
				m.runningErrs++
				m.mu.Unlock()
			}
			continue
		}
		now := time.Now()
		m.mu.Lock()
		m.procChecks++
		m.mu.Unlock()
		seen := map[int]bool{}
		byModel := map[string][]int{}
		for _, p := range procs {
			seen[p.pid] = true
			byModel[p.model] = append(byModel[p.model], p.pid)
			pid, ok := running[p.model]
			if ok && pid == p.pid {
				delete(orphanSince, p.pid)
				continue
			}
			if ok && pid == 0 {
				// Starting, its process spawned but not yet known to
				// the swapper: this may be it. Neither cleared nor
				// counted.
				continue
			}
			since, ok := orphanSince[p.pid]
			if !ok {
				orphanSince[p.pid] = now
				continue
			}
			key := fmt.Sprint("orphan ", p.pid)
			if now.Sub(since) > stopTimeout+3*time.Second && !reported[key] {
				reported[key] = true
				m.rec.violate("backend outlived its model",
					"pid %d of model %s has been alive %v without hotswap reporting it (hotswap reports: %v)",
					p.pid, p.model, now.Sub(since).Truncate(time.Millisecond), running)
			}
		}
		for pid := range orphanSince {
			if !seen[pid] {
				delete(orphanSince, pid)
			}
		}
		for model, pids := range byModel {
			if len(pids) < 2 {
				delete(dupSince, model)
				continue
			}
			since, ok := dupSince[model]
			if !ok {
				dupSince[model] = now
				continue
			}
			slices.Sort(pids)
			key := fmt.Sprint("dup ", model, pids)
			if now.Sub(since) > 3*time.Second && !reported[key] {
				reported[key] = true
				m.rec.violate("two backends for one model", "model %s has had %d live processes %v for %v",
					model, len(pids), pids, now.Sub(since).Truncate(time.Millisecond))
			}
		}
		for model := range dupSince {
			if len(byModel[model]) < 2 {
				delete(dupSince, model)
			}
		}
	}
}

// running is GET /admin/running: the pid of each model hotswap reports
// (0 while it has none yet).
func (m *monitors) running(ctx context.Context, c *http.Client) (map[string]int, error) {
	status, body, err := call(ctx, c, "GET", m.url+"/admin/running", "")
	if err != nil {
		return nil, err
	}
	if status != 200 {
		return nil, fmt.Errorf("/admin/running: %d %s", status, body)
	}
	var list []struct {
		Model string `json:"model"`
		Pid   int    `json:"pid"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range list {
		out[r.Model] = r.Pid
	}
	return out, nil
}

// stallLimit is the longest the load may go without a single request
// answered 200. With fourteen clients on six models that can serve, a
// 200 comes every few hundred milliseconds; queue_timeout (20 s) plus 5 s
// without one is not a slow hotswap but a stuck one.
const stallLimit = 25 * time.Second

// watchProgress checks, every second while the load runs, that requests
// are being served: invariant 1 is kept by a hotswap that answers every
// request 503 queue_timeout, which is no service at all.
func (m *monitors) watchProgress(ctx context.Context, tal *tally) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	begin := time.Now()
	var reported time.Time // the last 200 before the stall reported
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tal.mu.Lock()
		last, sent := tal.anyOK, tal.sent
		tal.mu.Unlock()
		if last.IsZero() {
			last = begin
		}
		gap := time.Since(last)
		m.mu.Lock()
		m.longestStall = max(m.longestStall, gap)
		m.mu.Unlock()
		if gap > stallLimit && !last.Equal(reported) {
			reported = last
			m.rec.violate("no request served", "no request has been answered 200 for %v (since +%v; %d requests sent so far)",
				gap.Truncate(time.Second), last.Sub(m.rec.start).Truncate(time.Millisecond), sent)
		}
	}
}

// rssMargin is how much more RSS than at its start hotswap may keep when
// idle after the soak. Under the race detector (go test -race, as make
// test runs it), the race runtime's shadow memory grows with the heap's
// high-water mark and is never given back: hotswap's idle RSS ended 30 to
// 43 MiB above its start in our runs, after a 15 s soak as after a 60 s
// one. There, only a gross leak can be told from that, with a margin of
// 80 MiB.
func rssMargin(race bool) int64 {
	if race {
		return 80 << 20
	}
	return 20 << 20
}

// healthTimeout is what /health must answer within.
const healthTimeout = 100 * time.Millisecond

// probeHealth asks /health every 100 ms, each on a new connection (so
// that a stuck accept loop shows too) and with a 100 ms timeout. The soak
// competes with hotswap for this machine's two cores, and a probe can
// miss its 100 ms for want of a CPU; a deadlock, though, fails every
// probe. So a violation is three probes in a row that fail (300 ms and
// more without an answer); single slow probes are counted, not failed.
func (m *monitors) probeHealth(ctx context.Context) {
	c := &http.Client{Timeout: healthTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	streak := 0
	var streakFrom time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		begin := time.Now()
		status, _, err := call(ctx, c, "GET", m.url+"/health", "")
		took := time.Since(begin)
		if ctx.Err() != nil {
			return
		}
		ok := err == nil && status == 200
		m.mu.Lock()
		m.healthN++
		if ok {
			m.healthMax = max(m.healthMax, took)
		} else {
			m.healthFailed++
		}
		if !ok || took > healthTimeout {
			m.healthSlow++
		}
		m.mu.Unlock()
		if ok {
			if streak >= 3 {
				m.mu.Lock()
				m.healthStreak = max(m.healthStreak, streak)
				m.mu.Unlock()
			}
			streak = 0
			continue
		}
		streak++
		if streak == 1 {
			streakFrom = m.rec.since()
		}
		if streak == 3 {
			m.rec.violate("/health unanswered", "3 probes in a row (from +%v) got no answer within %v; the last: %v",
				streakFrom, healthTimeout, err)
		}
	}
}

// idle waits up to within for hotswap's own goroutines (see goroutines) and RSS to come back to their baselines (plus
// 10 goroutines, and margin) and returns the last figures and whether
// they did.
func idle(h *hotswap, c *http.Client, baseG int, baseRSS, margin int64, within time.Duration) (all, g int, rss int64, ok bool) {
	deadline := time.Now().Add(within)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		a, n, err := h.goroutines(c)
		if err == nil {
			all, g = a, n
		}
		rss = h.rss()
		if err == nil && g <= baseG+10 && rss <= baseRSS+margin {
			return all, g, rss, true
		}
		if time.Now().After(deadline) {
			return all, g, rss, false
		}
		<-tick.C
	}
}
