package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/internal/gguf"
	"github.com/hotswap/hotswap/internal/mocktest"
)

// roundsEnv sets how many rounds BenchmarkRealLlamaServer measures each
// case (default 5; SwapOverhead makes ten times as many swaps).
const roundsEnv = "HOTSWAP_BENCH_ROUNDS"

// BenchmarkRealLlamaServer measures, against a real llama-server on models
// that internal/gguf generates (random weights; nothing is downloaded),
// the goals of issue 31 that need one:
//
//   - ReadAhead: a 2 GiB model is started through hotswap after another
//     model's 6 s drain, its file warm in the page cache, dropped from it
//     (POSIX_FADV_DONTNEED) and read ahead while the drain runs, or
//     dropped with read_ahead: false, under fifo; and dropped and read
//     ahead under batch. Goal: the cold start read ahead takes at most
//     1.2× the warm one.
//   - SwapOverhead: requests alternate between two small models that do
//     not fit together; each is a swap. Its overhead is the request's
//     latency through hotswap less the incoming llama-server's own start
//     (process start to /health 200) and answer, measured in the same
//     round by running that llama-server directly. Goal: at most 30 ms.
//   - Estimate: hotswap's footprint estimate from the GGUF file, for a
//     model with nothing declared or learned, against the footprint it
//     then learns from the running llama-server. Goal: within 20%.
//
// Each sub-benchmark measures all its rounds once, whatever b.N (run it
// with -benchtime 1x), logs median, min and max of each figure, and
// reports the medians as metrics. Skipped without HOTSWAP_LLAMA_SERVER:
//
//	HOTSWAP_LLAMA_SERVER=/path/to/llama-server make bench-real
func BenchmarkRealLlamaServer(b *testing.B) {
	bin := os.Getenv(llamaServerEnv)
	if bin == "" {
		b.Skipf("set %s to a llama-server binary to run this benchmark (see README)", llamaServerEnv)
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	rounds := 5
	if v := os.Getenv(roundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive whole number", roundsEnv, v)
		}
		rounds = n
	}
	b.Cleanup(func() {
		if left := mocktest.Leftovers(bin, 10*time.Second); len(left) > 0 {
			b.Errorf("llama-server left running: %v", left)
		}
	})
	g := &genModels{dir: b.TempDir(), made: map[string]string{}}
	b.Run("ReadAhead", func(b *testing.B) { benchReadAhead(b, bin, g, rounds) })
	b.Run("SwapOverhead", func(b *testing.B) { benchSwapOverhead(b, bin, g, 10*rounds) })
	b.Run("Estimate", func(b *testing.B) { benchEstimate(b, bin, g) })
}

// bigModel is ReadAhead's 2 GiB model: a 16-layer llama of width 2048
// (about 0.5 B parameters in F32), the size left for the feed-forward
// width (about 2700).
var bigModel = gguf.Options{Name: "big-2g", Seed: 31, Layers: 16, EmbeddingLength: 2048, HeadCount: 16}.WithWeightBytes(2 << 30)

// genModels writes each model once, for all the sub-benchmarks.
type genModels struct {
	dir  string
	made map[string]string
}

func (g *genModels) path(tb testing.TB, name string, o gguf.Options) string {
	tb.Helper()
	if p, ok := g.made[name]; ok {
		return p
	}
	p := filepath.Join(g.dir, name+".gguf")
	begin := time.Now()
	if err := gguf.WriteTinyLlama(p, o); err != nil {
		tb.Fatal(err)
	}
	// On disk, so that POSIX_FADV_DONTNEED can drop its pages (it leaves
	// dirty ones).
	f, err := os.Open(p)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	tb.Logf("wrote %s: %d MiB in %.1f s", name, fi.Size()>>20, time.Since(begin).Seconds())
	g.made[name] = p
	return p
}

// llamaArgs is the llama-server command line for model at path, as a
// config's cmd (port "${PORT}") or a direct run.
func llamaArgs(bin, path, alias, port, extra string) string {
	return fmt.Sprintf("%s -m %s --host 127.0.0.1 --port %s --alias %s -ngl 0 %s", bin, path, port, alias, extra)
}

// benchReadAhead: see BenchmarkRealLlamaServer. The models are "ahead"
// and "noahead" (read_ahead: false), one llama-server command line; the
// drain is a mock streaming for 6 s. Memory is declared under limit_ram
// so that the drain and either model never fit together, while the RAM
// left beside the plan holds the whole file (the read-ahead's budget).
// Under fifo the swap is decided at once and the llama-server's start
// waits for the drain, reading ahead meanwhile. A fourth case runs the
// cold start read ahead under batch, the default policy, on a second
// hotswap: there a start that would stop a busy model is decided only
// when it is idle (or max_wait has passed), so the drain passes with
// nothing read.
func benchReadAhead(b *testing.B, bin string, g *genModels, rounds int) {
	if !pageCacheControl {
		b.Skip("needs Linux: posix_fadvise and mincore")
	}
	big := g.path(b, "big-2g", bigModel)
	fi, err := os.Stat(big)
	if err != nil {
		b.Fatal(err)
	}
	hb := build(b)
	rigs := map[string]*aheadRig{}
	for i, policy := range []string{"fifo", "batch"} {
		rigs[policy] = newAheadRig(b, hb, bin, big, policy, 26200+50*i)
	}
	cases := []struct {
		name, policy, model string
		cold                bool
	}{
		{"warm", "fifo", "ahead", false},
		{"cold, read ahead", "fifo", "ahead", true},
		{"cold, no read-ahead", "fifo", "noahead", true},
		{"cold, read ahead, batch policy", "batch", "ahead", true},
	}
	one := func(policy, model string, cold bool) aheadResult {
		for _, r := range rigs { // no llama-server keeps the file mapped
			if code, body := adminDo(r.c, "POST", "/admin/unload"); code != 200 {
				b.Fatalf("unload: %d %s", code, body)
			}
		}
		return rigs[policy].one(model, cold)
	}
	one("fifo", "ahead", false) // a first start, not counted: the binary and its libraries cached
	res := make([][]aheadResult, len(cases))
	for range rounds {
		for i, cs := range cases {
			res[i] = append(res[i], one(cs.policy, cs.model, cs.cold))
		}
	}
	starts := make([]sample, len(cases))
	for i, cs := range cases {
		var req, drain, read, ahead, resident sample
		for _, r := range res[i] {
			starts[i] = append(starts[i], r.start)
			req = append(req, r.request)
			drain = append(drain, r.drain)
			read = append(read, float64(r.read>>20))
			ahead = append(ahead, r.ahead)
			resident = append(resident, 100*r.residentBefore)
		}
		b.Logf("%s: start (process start to ready) %s s", cs.name, starts[i])
		b.Logf("    request %s s, drain (its stream began to its backend stopped) %s s", req, drain)
		b.Logf("    read ahead %s MiB in %s s; file cached when the start was asked for %s %%", read, ahead, resident)
	}
	warm, ahead, cold, batch := starts[0].median(), starts[1].median(), starts[2].median(), starts[3].median()
	minRatio := func(i int) float64 { return slices.Min(starts[i]) / slices.Min(starts[0]) }
	b.Logf("file %d MiB, %d rounds; to warm, medians: cold read ahead %.2f (goal at most 1.2), cold without %.1f, cold read ahead under batch %.1f; minima: %.2f, %.1f, %.1f",
		fi.Size()>>20, rounds, ahead/warm, cold/warm, batch/warm, minRatio(1), minRatio(2), minRatio(3))
	b.ReportMetric(warm, "warm-start-s")
	b.ReportMetric(ahead, "ahead-start-s")
	b.ReportMetric(cold, "cold-start-s")
	b.ReportMetric(ahead/warm, "ahead/warm")
	b.ReportMetric(cold/warm, "cold/warm")
	b.ReportMetric(batch/warm, "batch-ahead/warm")
	b.ReportMetric(0, "ns/op")
}

// aheadRig is a hotswap that ReadAhead measures starts through.
type aheadRig struct {
	b   *testing.B
	c   *realClient
	ev  *eventWatch
	big string
}

type aheadResult struct {
	start, request, drain, ahead float64 // seconds
	read                         int64   // bytes read ahead
	residentBefore               float64 // of the file, as the start was asked for
}

func newAheadRig(b *testing.B, hb bins, bin, big, policy string, firstPort int) *aheadRig {
	fi, err := os.Stat(big)
	if err != nil {
		b.Fatal(err)
	}
	fileMiB := fi.Size()>>20 + 1
	need := fileMiB + 400
	limit := need + fileMiB + 64
	cmd := llamaArgs(bin, big, "${MODEL}", "${PORT}", "-c 512 -np 1 -t 2")
	cfg := fmt.Sprintf(`
ports: %[5]d-%[6]d
stop_timeout: 10s
memory:
  limit_ram: %[1]dMiB
  state_file: %[2]s
scheduling:
  policy: %[7]s
models:
  drain:
    cmd: MOCK -port ${PORT} -model ${MODEL} -stream-interval 100ms -tokens 60
    memory: {ram: %[3]dMiB}
  ahead:
    cmd: %[4]s
    memory: {ram: %[3]dMiB}
  noahead:
    cmd: %[4]s
    memory: {ram: %[3]dMiB}
    read_ahead: false
`, limit, filepath.Join(b.TempDir(), "state.json"), need, cmd, firstPort, firstPort+49, policy)
	url := startForBench(b, hb, cfg)
	return &aheadRig{b: b, c: &realClient{t: b, url: url, http: &http.Client{Timeout: 5 * time.Minute}},
		ev: watchEvents(b, url), big: big}
}

// one starts model after a drain, its file warm or cold, and measures.
func (r *aheadRig) one(model string, cold bool) aheadResult {
	b, c, ev := r.b, r.c, r.ev
	if cold {
		dropCache(b, r.big)
	} else {
		warmCache(b, r.big)
	}
	var res aheadResult
	res.residentBefore = residentShare(b, r.big)
	if cold && res.residentBefore > 0.05 {
		b.Fatalf("POSIX_FADV_DONTNEED left %.0f%% of the file cached: cannot measure a cold start here", 100*res.residentBefore)
	}
	mark := ev.mark()
	drained := make(chan error, 1)
	began := make(chan struct{})
	drainStart := time.Now()
	go func() { drained <- streamOnce(c, "drain", began) }()
	select {
	case <-began:
	case err := <-drained:
		b.Fatalf("drain stream: %v", err)
	}
	t0 := time.Now()
	answer(b, c, model, 1)
	res.request = time.Since(t0).Seconds()
	if err := <-drained; err != nil {
		b.Fatalf("drain stream: %v", err)
	}
	res.drain = ev.await(b, mark, events.Stop, "drain").Time.Sub(drainStart).Seconds()
	res.start = num(ev.await(b, mark, events.Ready, model), "seconds")
	if e, ok := ev.find(mark, events.ReadAhead, model, func(e events.Event) bool { return e.Data["done"] == true }); ok {
		res.ahead = num(e, "seconds")
		res.read = int64(num(e, "bytes"))
	}
	return res
}

// benchSwapOverhead: see BenchmarkRealLlamaServer. Each round runs the
// incoming model's llama-server directly first (start, one answer, then
// SIGTERM, every other pair of rounds with the answer's keep-alive
// connection still open), then asks hotswap for it, which swaps it in for
// the other. idle_grace is 0: the swap is decided the moment the request
// comes, as hotswap's mechanics, not batch's policy, are measured.
func benchSwapOverhead(b *testing.B, bin string, g *genModels, rounds int) {
	paths := map[string]string{
		"a": g.path(b, "swap-a", gguf.Options{Name: "swap-a", Seed: 20}.WithWeightBytes(20<<20)),
		"b": g.path(b, "swap-b", gguf.Options{Name: "swap-b", Seed: 40}.WithWeightBytes(40<<20)),
	}
	const extra = "-c 256 -np 1 -t 1"
	hb := build(b)
	cfg := fmt.Sprintf(`
ports: 26300-26399
stop_timeout: 5s
memory:
  limit_ram: 100MiB
  state_file: %s
scheduling:
  idle_grace: 0s
models:
  a:
    cmd: %s
    memory: {ram: 60MiB}
  b:
    cmd: %s
    memory: {ram: 80MiB}
`, filepath.Join(b.TempDir(), "state.json"), llamaArgs(bin, paths["a"], "${MODEL}", "${PORT}", extra),
		llamaArgs(bin, paths["b"], "${MODEL}", "${PORT}", extra))
	url := startForBench(b, hb, cfg)
	ev := watchEvents(b, url)
	c := &realClient{t: b, url: url, http: &http.Client{Timeout: time.Minute}}
	answer(b, c, "a", 4) // a is loaded, and hotswap keeps a connection to it
	answer(b, c, "a", 4)

	var (
		overhead, through, direct, dStart, dAnswer, hStart sample
		stopTook, exitIdle, exitNone                       sample
		perModel                                           = map[string]*[2]sample{"a": {}, "b": {}}
	)
	for i := range rounds {
		in, out := "b", "a"
		if i%2 == 1 {
			in, out = "a", "b"
		}
		keep := i%4 < 2
		d := directRun(b, strings.Fields(llamaArgs(bin, paths[in], in, "PORT", extra)), in, keep)
		mark := ev.mark()
		t0 := time.Now()
		answer(b, c, in, 4)
		took := time.Since(t0).Seconds()
		ready := num(ev.await(b, mark, events.Ready, in), "seconds")
		stop := num(ev.await(b, mark, events.Stop, out), "seconds")
		own := d.ready + d.answer
		overhead = append(overhead, 1000*(took-own))
		through = append(through, 1000*took)
		direct = append(direct, 1000*own)
		dStart = append(dStart, 1000*d.ready)
		dAnswer = append(dAnswer, 1000*d.answer)
		hStart = append(hStart, 1000*ready)
		stopTook = append(stopTook, 1000*stop)
		if keep {
			exitIdle = append(exitIdle, 1000*d.exit)
		} else {
			exitNone = append(exitNone, 1000*d.exit)
		}
		perModel[in][0] = append(perModel[in][0], 1000*took)
		perModel[in][1] = append(perModel[in][1], 1000*own)
	}
	b.Logf("%d swaps, alternating a (20 MiB) and b (40 MiB); all in ms:", rounds)
	b.Logf("  overhead (through hotswap less direct start+answer, paired by round) %s", overhead)
	b.Logf("  request through hotswap, swap included                            %s", through)
	b.Logf("  direct: start (spawn to /health 200) + answer                        %s", direct)
	b.Logf("    of which start %s, answer %s", dStart, dAnswer)
	b.Logf("  hotswap's own start figure (ready event)                             %s", hStart)
	b.Logf("  outgoing llama-server stopped by hotswap (stop event: close idle, SIGTERM, exit) %s", stopTook)
	b.Logf("  direct exit after SIGTERM: keep-alive connection open %s; none open %s", exitIdle, exitNone)
	for _, m := range []string{"a", "b"} {
		pm := perModel[m]
		b.Logf("  into %s: through hotswap median %.1f, direct median %.1f: difference of medians %.1f",
			m, pm[0].median(), pm[1].median(), pm[0].median()-pm[1].median())
	}
	b.ReportMetric(overhead.median(), "overhead-ms")
	b.ReportMetric(stopTook.median(), "stop-ms")
	b.ReportMetric(exitIdle.median(), "exit-idle-conn-ms")
	b.ReportMetric(exitNone.median(), "exit-no-conn-ms")
	b.ReportMetric(0, "ns/op")
}

// benchEstimate: see BenchmarkRealLlamaServer. Models of several shapes,
// sizes, context sizes and slot counts, none with memory declared: the
// estimate is what /admin/models says the model needs before its first
// start; the measured footprint is what hotswap learns once it has
// started (its need afterwards), first after a short chat, then after a
// prompt long enough to fill a micro-batch (-ub, 512 tokens, or the
// context if smaller). llama-server allocates its compute buffer for a
// full micro-batch at start, but its pages become resident only when a
// batch fills them: the short figure is what a model idles at, the long
// one what it takes when serving, and what planning must leave room for.
// llama-server's own VmHWM is read for comparison.
func benchEstimate(b *testing.B, bin string, g *genModels) {
	cases := []struct {
		name  string
		opts  gguf.Options
		extra string
		words int // in the long prompt: more than a micro-batch, within a slot's context
	}{
		{"tiny-20m", gguf.Options{Name: "e1", Seed: 1}.WithWeightBytes(20 << 20), "-c 256 -np 1", 220},
		{"tiny-40m-np4", gguf.Options{Name: "e2", Seed: 2}.WithWeightBytes(40 << 20), "-c 4096 -np 4", 600},
		{"gqa-256m-np2", gguf.Options{Name: "e3", Seed: 3, Layers: 8, EmbeddingLength: 1024, HeadCount: 16, HeadCountKV: 4}.WithWeightBytes(256 << 20), "-c 8192 -np 2", 600},
		{"f16-kv-heavy", gguf.Options{Name: "e4", Seed: 4, Layers: 16, EmbeddingLength: 1024, HeadCount: 8, F16: true}.WithWeightBytes(256 << 20), "-c 16384 -np 1", 600},
		{"defaults", gguf.Options{Name: "e5", Seed: 5, ContextLength: 4096}.WithWeightBytes(64 << 20), "", 600},
		{"big-2g", bigModel, "-c 2048 -np 1", 600},
	}
	var models strings.Builder
	for _, cs := range cases {
		file := "est-" + cs.name
		if cs.name == "big-2g" {
			file = cs.name // ReadAhead's, if it ran
		}
		p := g.path(b, file, cs.opts)
		fmt.Fprintf(&models, "  %s:\n    cmd: %s\n", cs.name, llamaArgs(bin, p, "${MODEL}", "${PORT}", cs.extra+" -t 2"))
	}
	hb := build(b)
	cfg := fmt.Sprintf(`
ports: 26400-26499
stop_timeout: 10s
memory:
  state_file: %s
models:
%s`, filepath.Join(b.TempDir(), "state.json"), models.String())
	url := startForBench(b, hb, cfg)
	ev := watchEvents(b, url)
	c := &realClient{t: b, url: url, http: &http.Client{Timeout: 5 * time.Minute}}
	// learned is the model's need once a measurement after mark (hotswap
	// measures a backend as it turns ready, then every 5 s) has had its
	// chance to raise it: at a footprint event (it grew), or after 6 s.
	learned := func(model string, mark int) modelStatus {
		mocktest.Eventually(6*time.Second, func() bool {
			_, ok := ev.find(mark, events.Footprint, model, nil)
			return ok
		})
		return adminModel(b, c, model)
	}
	pct := func(est, got int64) float64 { return 100 * float64(est-got) / float64(got) }
	var errShort, errLong sample
	worst := 0.0
	for _, cs := range cases {
		est := adminModel(b, c, cs.name).NeedRAM
		answer(b, c, cs.name, 4)
		short := learned(cs.name, ev.mark())
		mark := ev.mark()
		prompt := strings.Repeat("hello ", cs.words)
		c.post("/v1/chat/completions", fmt.Sprintf(`{"model":%q,"max_tokens":4,"messages":[{"role":"user","content":%q}]}`, cs.name, prompt))
		long := learned(cs.name, mark)
		_, hwm := procMem(long.Pid)
		eShort, eLong := pct(est, short.NeedRAM), pct(est, long.NeedRAM)
		errShort = append(errShort, eShort)
		errLong = append(errLong, eLong)
		worst = max(worst, eLong, -eLong)
		b.Logf("%-13s %-14s estimate %5d MiB; learned after a short chat %5d MiB (estimate %+6.1f%%), after %d words %5d MiB (%+6.1f%%); VmHWM %5d MiB",
			cs.name, cs.extra, est>>20, short.NeedRAM>>20, eShort, cs.words, long.NeedRAM>>20, eLong, hwm>>20)
		if code, body := adminDo(c, "POST", "/admin/models/"+cs.name+"/unload"); code != 200 {
			b.Fatalf("unload %s: %d %s", cs.name, code, body)
		}
	}
	b.Logf("estimate against the learned footprint, %%: after a short chat %s; after a full micro-batch %s, worst %.1f%% (goal within 20%%)",
		errShort, errLong, worst)
	b.ReportMetric(worst, "worst-error-%")
	b.ReportMetric(errShort.median(), "short-chat-error-%")
	b.ReportMetric(0, "ns/op")
}

// startForBench runs hotswap on cfg and returns its URL; its log is
// shown if the benchmark fails.
func startForBench(b *testing.B, hb bins, cfg string) string {
	b.Helper()
	_, url, logs := startLogged(b, hb, writeConfig(b, hb, cfg))
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("hotswap's log:\n%s", logs.String())
		}
	})
	return url
}

// sample is a set of figures of one kind.
type sample []float64

func (s sample) median() float64 {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	if n := len(c); n%2 == 1 {
		return c[n/2]
	} else {
		return (c[n/2-1] + c[n/2]) / 2
	}
}

// String is "median M (min A, max B, N n)".
func (s sample) String() string {
	if len(s) == 0 {
		return "none"
	}
	return fmt.Sprintf("median %.4g (min %.4g, max %.4g, N %d)", s.median(), slices.Min(s), slices.Max(s), len(s))
}

// answer asks hotswap for a chat completion of n tokens from model.
func answer(tb testing.TB, c *realClient, model string, n int) {
	tb.Helper()
	c.post("/v1/chat/completions", fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":"hi"}]}`, model, n))
}

// adminDo is c.do that returns the status and body.
func adminDo(c *realClient, method, path string) (int, string) {
	resp, body := c.do(method, path, "")
	return resp.StatusCode, body
}

// streamOnce streams a chat completion from model to its end, closing
// began at its first event.
func streamOnce(c *realClient, model string, began chan<- struct{}) error {
	resp, err := c.http.Post(c.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		close(began)
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		close(began)
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%d %s", resp.StatusCode, body)
	}
	sc := bufio.NewScanner(resp.Body)
	first, done := true, false
	for sc.Scan() {
		if first && strings.HasPrefix(sc.Text(), "data: ") {
			first = false
			close(began)
		}
		done = done || sc.Text() == "data: [DONE]"
	}
	if first {
		close(began)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if !done {
		return fmt.Errorf("stream ended without [DONE]")
	}
	return nil
}

type modelStatus struct {
	State   string `json:"state"`
	Pid     int    `json:"pid"`
	RAM     int64  `json:"ram"`
	NeedRAM int64  `json:"need_ram"`
}

// adminModel is model's entry in /admin/models.
func adminModel(tb testing.TB, c *realClient, model string) modelStatus {
	tb.Helper()
	_, body := c.do("GET", "/admin/models", "")
	var list []struct {
		Model string `json:"model"`
		modelStatus
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		tb.Fatalf("/admin/models: %v: %s", err, body)
	}
	for _, m := range list {
		if m.Model == model {
			return m.modelStatus
		}
	}
	tb.Fatalf("/admin/models has no %s: %s", model, body)
	return modelStatus{}
}

// procMem is a process's VmRSS and VmHWM, in bytes (0 where unknown).
func procMem(pid int) (rss, hwm int64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kib, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kib << 10
		case "VmHWM:":
			hwm = kib << 10
		}
	}
	return rss, hwm
}

// direct is one llama-server run without hotswap, in seconds.
type direct struct{ ready, answer, exit float64 }

// directRun starts argv (its "PORT" replaced by a free port), polls
// /health every millisecond on a new connection until it answers 200,
// asks for one chat completion on a keep-alive connection, and stops it
// with SIGTERM: with that connection still open when keepIdle, else
// after closing it.
func directRun(tb testing.TB, argv []string, model string, keepIdle bool) direct {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	for i, a := range argv {
		if a == "PORT" {
			argv[i] = port
		}
	}
	base := "http://127.0.0.1:" + port
	var out mocktest.Output
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var d direct
	for {
		resp, err := probe.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				d.ready = time.Since(begin).Seconds()
				break
			}
		}
		select {
		case <-exited:
			tb.Fatalf("llama-server exited while starting: %s", out.String())
		default:
		}
		if time.Since(begin) > time.Minute {
			tb.Fatalf("llama-server not ready after a minute: %s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	tr := &http.Transport{}
	client := &http.Client{Timeout: time.Minute, Transport: tr}
	t0 := time.Now()
	resp, err := client.Post(base+"/v1/chat/completions", "application/json",
		strings.NewReader(fmt.Sprintf(`{"model":%q,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`, model)))
	if err != nil {
		tb.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d.answer = time.Since(t0).Seconds()
	if resp.StatusCode != 200 {
		tb.Fatalf("direct chat: %d", resp.StatusCode)
	}
	if !keepIdle {
		tr.CloseIdleConnections()
	}
	t1 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		tb.Fatal("llama-server did not exit within 30 s of SIGTERM")
	}
	d.exit = time.Since(t1).Seconds()
	tr.CloseIdleConnections()
	return d
}

// eventWatch keeps what hotswap's /admin/events says.
type eventWatch struct {
	mu  sync.Mutex
	evs []events.Event
}

func watchEvents(tb testing.TB, url string) *eventWatch {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/admin/events", nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	w := &eventWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e events.Event
			if json.Unmarshal([]byte(data), &e) == nil {
				w.mu.Lock()
				w.evs = append(w.evs, e)
				w.mu.Unlock()
			}
		}
	}()
	tb.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return w
}

// mark is where the events seen from now on begin.
func (w *eventWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.evs)
}

// find is the first event from mark on of typ for model that ok accepts
// (any, if ok is nil).
func (w *eventWatch) find(mark int, typ, model string, ok func(events.Event) bool) (events.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.evs[mark:] {
		if e.Type == typ && e.Model == model && (ok == nil || ok(e)) {
			return e, true
		}
	}
	return events.Event{}, false
}

// await is find of any such event, waiting up to 30 s for it.
func (w *eventWatch) await(tb testing.TB, mark int, typ, model string) events.Event {
	tb.Helper()
	var e events.Event
	if !mocktest.Eventually(30*time.Second, func() (ok bool) { e, ok = w.find(mark, typ, model, nil); return ok }) {
		tb.Fatalf("no %s event for %s", typ, model)
	}
	return e
}

// num is a number in e's data (0 if absent).
func num(e events.Event, key string) float64 {
	f, _ := e.Data[key].(float64)
	return f
}

// warmCache reads path whole, into the page cache.
func warmCache(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		tb.Fatal(err)
	}
}
