package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/bench/loadgen"
	"github.com/hotswap/hotswap/internal/mocktest"
)

// The fast path is measured the way the issue that set its goals did: the
// hotswap binary in its own process, in front of a backend answering in
// 5 ms, against that same backend reached directly, with wrk as the client
// (a C client, so the client's CPU does not eat into the proxy's). Without
// wrk the benchmark says so and uses hotswap bench's Go client.
const fastPathConfig = `
log_level: info
ports: 25000-25099
server: {max_conns: 4000, max_conns_per_ip: 4000}
models:
  m:
    cmd: MOCK -port ${PORT} -model m -latency 5ms -progress-interval 0
    parallel: 1000
  streams:
    cmd: MOCK -port ${PORT} -model streams -tokens 60 -stream-interval 1s -progress-interval 0
    parallel: 1000
`

// proc is hotswap running as its own process.
type proc struct {
	url, backend string
	pid          int
}

func startProcess(b *testing.B) *proc {
	b.Helper()
	dir := b.TempDir()
	// HOTSWAP_BENCH_BINARY measures another build (an earlier commit's,
	// for a before and after on one machine).
	exe := os.Getenv("HOTSWAP_BENCH_BINARY")
	if exe == "" {
		var err error
		if exe, err = mocktest.Build(dir, "./cmd/hotswap"); err != nil {
			b.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(fastPathConfig, "MOCK", mockExe)), 0o644); err != nil {
		b.Fatal(err)
	}
	// The log goes to a file, as to journald: written by hotswap, read by
	// nobody during the run, so that no reader competes for the cores.
	logf, err := os.Create(filepath.Join(dir, "hotswap.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(exe, "-config", cfg, "-listen", addr)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+dir)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	p := &proc{pid: cmd.Process.Pid, url: "http://" + addr}
	if !mocktest.Eventually(20*time.Second, func() bool {
		resp, err := http.Get(p.url + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}) {
		log, _ := os.ReadFile(logf.Name())
		b.Fatalf("hotswap is not answering:\n%s", log)
	}
	chat(b, p.url, "m")
	p.backend = backendURL(b, p.url, "m")
	return p
}

// backendURL is where hotswap at url runs model's backend.
func backendURL(b *testing.B, url, model string) string {
	b.Helper()
	resp, err := http.Get(url + "/admin/running")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var running []struct {
		Model string `json:"model"`
		Port  int    `json:"port"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&running); err != nil {
		b.Fatal(err)
	}
	for _, r := range running {
		if r.Model == model {
			return fmt.Sprintf("http://127.0.0.1:%d", r.Port)
		}
	}
	b.Fatalf("%s is not running: %+v", model, running)
	return ""
}

// cpu is the CPU time the process has used, all its threads, to the
// nanosecond (the scheduler's own account, not clock ticks).
func (p *proc) cpu(b *testing.B) time.Duration {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", p.pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no schedstat for %d: %v", p.pid, err)
	}
	var total time.Duration
	for _, f := range tasks {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that ended
		}
		ns, _ := strconv.ParseInt(strings.Fields(string(raw))[0], 10, 64)
		total += time.Duration(ns)
	}
	return total
}

// load is one run of the client: requests answered, their p50, and
// errors (non-2xx or failed).
type load struct {
	requests int
	p50      time.Duration
	errors   int
}

const wrkScript = `
wrk.method = "POST"
wrk.body = '{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d\n", summary.requests, latency:percentile(50),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.errors.status))
end
`

// drive sends chat completions to url for d from conns connections.
func drive(b *testing.B, url string, conns int, d time.Duration) load {
	b.Helper()
	if wrk, err := exec.LookPath("wrk"); err == nil {
		script := filepath.Join(b.TempDir(), "post.lua")
		if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
			b.Fatal(err)
		}
		threads := min(conns, 2)
		out, err := exec.Command(wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String(),
			"-s", script, url+"/v1/chat/completions").CombinedOutput()
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		var l load
		var p50us, sockErr, statusErr int
		i := strings.Index(string(out), "RESULT ")
		if i < 0 {
			b.Fatalf("wrk said:\n%s", out)
		}
		fmt.Sscanf(string(out[i:]), "RESULT %d %d %d %d", &l.requests, &p50us, &sockErr, &statusErr)
		l.p50, l.errors = time.Duration(p50us)*time.Microsecond, sockErr+statusErr
		return l
	}
	o, err := loadgen.Parse([]string{"-target", url, "-models", "m", "-users", strconv.Itoa(conns), "-duration", d.String(), "-max-tokens", "8"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	rep, err := loadgen.Run(context.Background(), o, nil)
	if err != nil {
		b.Fatal(err)
	}
	t := rep.Targets[0].Total
	return load{requests: t.Answered, p50: time.Duration(t.LatencyMs.P50 * float64(time.Millisecond)), errors: t.Errors}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkFastPath puts hotswap's warm path against the backend alone, in
// the same run: each iteration is one round of direct and proxied loads at
// 64 and at 1 connection, interleaved, so that the machine's drift touches
// both alike. It reports the medians over rounds (-benchtime 3x for three)
// of: proxied/direct requests a second at 64 connections, the p50 hotswap
// adds at 1 connection, and hotswap's own CPU per request (its threads'
// scheduler time over the requests it answered, both loads together).
func BenchmarkFastPath(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Log("wrk not found (Debian: apt-get install wrk): using hotswap bench's Go client, whose CPU competes with hotswap's")
	}
	hs := startProcess(b)
	var ratio, added, cpu, direct64, proxied64 []float64
	b.ResetTimer()
	for range b.N {
		d64 := drive(b, hs.backend, 64, 4*time.Second)
		c0 := hs.cpu(b)
		p64 := drive(b, hs.url, 64, 4*time.Second)
		c1 := hs.cpu(b)
		d1 := drive(b, hs.backend, 1, 2*time.Second)
		c2 := hs.cpu(b)
		p1 := drive(b, hs.url, 1, 2*time.Second)
		c3 := hs.cpu(b)
		if p64.errors+p1.errors+d64.errors+d1.errors > 0 {
			b.Errorf("errors: direct %d/%d, proxied %d/%d", d64.errors, d1.errors, p64.errors, p1.errors)
		}
		direct64 = append(direct64, float64(d64.requests)/4)
		proxied64 = append(proxied64, float64(p64.requests)/4)
		ratio = append(ratio, float64(p64.requests)/float64(d64.requests))
		added = append(added, float64((p1.p50 - d1.p50).Microseconds()))
		// The direct c1 load between the two proxied ones costs hotswap
		// nothing (it is idle then), but is left out all the same.
		used := (c1 - c0) + (c3 - c2)
		cpu = append(cpu, float64(used.Microseconds())/float64(p64.requests+p1.requests))
	}
	b.StopTimer()
	b.ReportMetric(median(ratio), "proxied/direct@64")
	b.ReportMetric(median(added), "added-p50-µs@1")
	b.ReportMetric(median(cpu), "hotswap-cpu-µs/req")
	b.ReportMetric(median(direct64), "direct-req/s@64")
	b.ReportMetric(median(proxied64), "proxied-req/s@64")
}

// BenchmarkStreamsRSS holds 1000 streams open through hotswap (a backend
// sending a token a second) and reports hotswap's resident memory then,
// and before: all of it (VmRSS), and its own (RssAnon, without the pages
// of its binary, which count in VmRSS as far as the page cache maps them:
// on Linux with large folios, nearly all its code and read-only data).
func BenchmarkStreamsRSS(b *testing.B) {
	hs := startProcess(b)
	const streams = 1000
	body := `{"model":"streams","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: streams}}
	chatStream := func(ctx context.Context, started *sync.WaitGroup) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.url+"/v1/chat/completions", strings.NewReader(body))
		resp, err := client.Do(req)
		started.Done()
		if err != nil {
			if ctx.Err() == nil {
				b.Error(err)
			}
			return
		}
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
		}
		defer resp.Body.Close()
		buf := make([]byte, 512)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				return
			}
		}
	}
	// Loaded first, so that its start is not in the figure.
	ctx, cancel := context.WithCancel(context.Background())
	var one sync.WaitGroup
	one.Add(1)
	go chatStream(ctx, &one)
	one.Wait()
	cancel()
	// Its counters are read from it directly: through hotswap, the read
	// would queue behind the streams for a slot.
	backend := backendURL(b, hs.url, "streams")
	var before, during, anon []float64
	b.ResetTimer()
	for range b.N {
		before = append(before, float64(rss(b, hs.pid, "VmRSS"))/(1<<20))
		ctx, cancel := context.WithCancel(context.Background())
		var started, done sync.WaitGroup
		started.Add(streams)
		done.Add(streams)
		for range streams {
			go func() { defer done.Done(); chatStream(ctx, &started) }()
		}
		started.Wait()
		if !mocktest.Eventually(30*time.Second, func() bool { return inFlight(backend) >= streams }) {
			b.Errorf("%d streams in flight, want %d", inFlight(backend), streams)
		}
		during = append(during, float64(rss(b, hs.pid, "VmRSS"))/(1<<20))
		anon = append(anon, float64(rss(b, hs.pid, "RssAnon"))/(1<<20))
		cancel()
		done.Wait()
		// hotswap lets a stream go when its next write finds the client
		// gone (here within a second): the next round starts once all
		// have, or it would queue behind them.
		if !mocktest.Eventually(30*time.Second, func() bool { return inFlight(backend) == 0 }) {
			b.Errorf("%d streams still in flight after the round", inFlight(backend))
		}
	}
	b.StopTimer()
	b.ReportMetric(median(before), "MiB-idle")
	b.ReportMetric(median(during), "MiB-1000-streams")
	b.ReportMetric(median(anon), "MiB-anon-1000-streams")
}

// rss is a field of the process's status: VmRSS (all it has resident),
// or RssAnon (its own memory, without the pages of its binary and
// libraries, which the page cache shares and can drop).
func rss(b *testing.B, pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("no %s", field)
	return 0
}

// inFlight is what a mock backend says it is serving now.
func inFlight(backend string) int {
	resp, err := http.Get(backend + "/mock/stats")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		InFlight int `json:"in_flight"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	return st.InFlight
}

// BenchmarkHotPathAllocs counts what a warm request allocates in hotswap
// (in this process) with a client that allocates nothing of its own
// (fasthttp's), against the backend's process; the direct case is that
// client alone, so the difference is hotswap's. Logging is off here (the
// in-process hotswap has a no-op logger): see BenchmarkFastPath for the
// whole, log line included.
func BenchmarkHotPathAllocs(b *testing.B) {
	hs := start(b)
	warm(b, hs.url, "a")
	st, _ := hs.sw.Status("a")
	body := []byte(`{"model":"a","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`)
	for _, c := range []struct{ name, url string }{{"direct", st.Upstream}, {"proxied", hs.url}} {
		b.Run(c.name, func(b *testing.B) { postLoop(b, c.url, body) })
	}
}

// postLoop posts body to url's /v1/chat/completions b.N times on one
// connection, with a client that allocates nothing per request, each
// answer read whole and required to be 200.
func postLoop(b *testing.B, url string, body []byte) {
	hc := &fasthttp.HostClient{Addr: strings.TrimPrefix(url, "http://")}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url + "/v1/chat/completions")
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	b.ReportAllocs()
	for b.Loop() {
		if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatalf("%v %d %.200s", err, resp.StatusCode(), resp.Body())
		}
	}
}
