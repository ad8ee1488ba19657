package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
)

// mockStats is the part of the mock's /mock/stats the tests compare with.
type mockStats struct {
	Requests int   `json:"requests"`
	Errors   int   `json:"errors"`
	Tokens   int64 `json:"tokens"`
}

// startMock runs the mock backend with args on a free port and returns its
// URL once it is ready.
func startMock(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(mockExe, append([]string{"-listen", "127.0.0.1:0", "-progress-interval", "0"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if _, a, ok := strings.Cut(sc.Text(), " ready on "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(10 * time.Second):
		t.Fatal("the mock did not say it was ready")
		return ""
	}
}

func statsOf(t *testing.T, url string) mockStats {
	t.Helper()
	resp, err := http.Get(url)
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

// readReport reads what -json wrote.
func readReport(t *testing.T, path string) Report {
	t.Helper()
	var rep Report
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// opts parses a command line as `hotswap bench` would.
func opts(t *testing.T, args ...string) Options {
	t.Helper()
	o, err := Parse(args, io.Discard)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return o
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	rep, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// sumTimeline is what the timeline counted, answered and failed.
func sumTimeline(tl Timeline) (answered, failed int) {
	for b := range tl.Answered {
		answered += tl.Answered[b]
		failed += tl.Errors[b]
	}
	return answered, failed
}

func TestClosedLoopCountsWhatTheBackendCounted(t *testing.T) {
	url := startMock(t, "-model", "m", "-tokens", "5", "-stream-interval", "0")
	rep := run(t, opts(t, "-target", url, "-models", "m", "-users", "4", "-requests", "60"))
	if len(rep.Targets) != 1 {
		t.Fatalf("targets: %+v", rep.Targets)
	}
	tr := rep.Targets[0]
	st := statsOf(t, url+"/mock/stats")
	if tr.Total.Sent != 60 || tr.Total.Answered != 60 || tr.Total.Errors != 0 || st.Requests != 60 {
		t.Fatalf("sent %d, answered %d, errors %d; the mock counted %d", tr.Total.Sent, tr.Total.Answered, tr.Total.Errors, st.Requests)
	}
	if tr.Total.OutputTokens != st.Tokens || st.Tokens != 60*5 {
		t.Errorf("output tokens %d, the mock sent %d", tr.Total.OutputTokens, st.Tokens)
	}
	if l := tr.Total.LatencyMs; l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
	if tr.Total.RPS <= 0 || tr.ElapsedS <= 0 || tr.Total.TTFTMs != nil {
		t.Errorf("req/s %v over %vs, ttft %v (not streamed: none)", tr.Total.RPS, tr.ElapsedS, tr.Total.TTFTMs)
	}
	if a, f := sumTimeline(tr.Timeline); a != 60 || f != 0 {
		t.Errorf("timeline holds %d answered, %d failed", a, f)
	}
	if tr.Hotswap != nil {
		t.Errorf("the mock is not hotswap: %+v", tr.Hotswap)
	}
}

func TestOpenLoopStreaming(t *testing.T) {
	url := startMock(t, "-model", "m", "-tokens", "6", "-stream-interval", "2ms")
	rep := run(t, opts(t, "-target", url, "-models", "m", "-rate", "200", "-requests", "40", "-stream"))
	tr := rep.Targets[0]
	st := statsOf(t, url+"/mock/stats")
	if tr.Total.Answered != 40 || st.Requests != 40 {
		t.Fatalf("answered %d, the mock counted %d", tr.Total.Answered, st.Requests)
	}
	if tr.Total.OutputTokens != st.Tokens || tr.Total.TokensCountedBy != "usage" {
		t.Errorf("output tokens %d by %q, the mock sent %d", tr.Total.OutputTokens, tr.Total.TokensCountedBy, st.Tokens)
	}
	ttft := tr.Total.TTFTMs
	if ttft == nil || ttft.P50 <= 0 || ttft.P50 > tr.Total.LatencyMs.P50 {
		t.Errorf("ttft %+v against latency %+v", ttft, tr.Total.LatencyMs)
	}
	// Six tokens 2ms apart: five gaps of about 2ms each.
	if g := tr.Total.InterTokenMs; g < 1.5 || g > 50 {
		t.Errorf("inter-token gap %vms, want about 2", g)
	}
	if rep.Workload.Loop != "open" || rep.Workload.Rate != 200 {
		t.Errorf("workload %+v", rep.Workload)
	}
}

// A stream without usage has its tokens counted from the chunks.
func TestStreamWithoutUsageCountsChunks(t *testing.T) {
	stream := "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n" +
		": a comment\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n" +
		"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
		"data: [DONE]\n\n"
	var o outcome
	if err := readStream(strings.NewReader(stream), time.Now(), &o); err != nil {
		t.Fatal(err)
	}
	if o.tokens != 2 || o.byUsage || o.nGaps != 1 || o.ttft <= 0 {
		t.Errorf("%+v", o)
	}
	// Cut before its end: an error, not an answer.
	cut := stream[:strings.Index(stream, "data: {\"choices\":[{\"delta\":{},")]
	if err := readStream(strings.NewReader(cut), time.Now(), &o); wireCode(context.Background(), err) != codeStreamCut {
		t.Errorf("a cut stream: %v", err)
	}
	// An error event within a 200 stream is an error with its code.
	ev := "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\nevent: error\ndata: {\"error\":{\"message\":\"x\",\"type\":\"server_error\",\"code\":\"backend_died\"}}\n\n"
	if err := readStream(strings.NewReader(ev), time.Now(), &o); wireCode(context.Background(), err) != "backend_died" {
		t.Errorf("an error event: %v", err)
	}
}

func TestErrorsByStatusAndCode(t *testing.T) {
	url := startMock(t, "-model", "m", "-error-every", "4", "-error-status", "503")
	base := []string{"-target", url, "-models", "m", "-users", "1", "-requests", "40"}
	rep := run(t, opts(t, base...))
	tr := rep.Targets[0]
	st := statsOf(t, url+"/mock/stats")
	if tr.Total.Errors != 10 || st.Errors != 10 || tr.Total.Answered != 30 || tr.Total.ErrorRate != 0.25 {
		t.Fatalf("errors %d (the mock %d), answered %d, rate %v", tr.Total.Errors, st.Errors, tr.Total.Answered, tr.Total.ErrorRate)
	}
	want := []ErrorCount{{Status: 503, Code: "mock_error", Count: 10}}
	if len(tr.Total.ErrorsBy) != 1 || tr.Total.ErrorsBy[0] != want[0] {
		t.Errorf("errors by %+v, want %+v", tr.Total.ErrorsBy, want)
	}
	// The exit status gates on -max-error-rate.
	for _, c := range []struct {
		rate string
		want int
	}{{"0.1", ExitErrorRate}, {"0.5", ExitOK}} {
		var out, errb bytes.Buffer
		if got := Main(context.Background(), append(base, "-max-error-rate", c.rate), &out, &errb); got != c.want {
			t.Errorf("-max-error-rate %s: exit %d, want %d; %s", c.rate, got, c.want, errb.String())
		}
		if !strings.Contains(out.String(), "mock_error") {
			t.Errorf("the summary does not list the errors:\n%s", out.String())
		}
	}
}

func TestUnreachableTargetFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	var errb bytes.Buffer
	began := time.Now()
	code := Main(context.Background(), []string{"-target", closed, "-models", "m", "-duration", "1m"}, io.Discard, &errb)
	if code != ExitUsage || !strings.Contains(errb.String(), "is down") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
	if time.Since(began) > discoverTimeout {
		t.Errorf("took %v to say a closed port is down", time.Since(began))
	}

	// A target that accepts connections and never answers: said after
	// the discovery timeout, not after the run's minute.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	errb.Reset()
	code = Main(context.Background(), []string{"-target", "http://" + hang.Addr().String(), "-models", "m", "-duration", "1m"}, io.Discard, &errb)
	if code != ExitUsage || !strings.Contains(errb.String(), "did not answer") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
}

const toolConfig = `
ports: 24000-24999
scheduling: {policy: fifo, idle_grace: 0s}
models:
  a:
    cmd: MOCK -port ${PORT} -model a -tokens 4 -stream-interval 0 -progress-interval 0
    parallel: 4
    memory: {ram: 6GiB}
  b:
    cmd: MOCK -port ${PORT} -model b -tokens 4 -stream-interval 0 -startup 50ms -progress-interval 0
    parallel: 4
    memory: {ram: 6GiB}
  embed:
    cmd: MOCK -port ${PORT} -model embed -progress-interval 0
    aliases: [text-embedding-3-small]
    kind: embedding
  whisper:
    cmd: MOCK -port ${PORT} -model whisper -progress-interval 0
    kind: stt
`

// toolMemory: a and b do not fit together; the rest take nothing.
func toolMemory() *probe.Fake {
	mem := probe.NewFake(mockExe, 10<<30)
	mem.Script("a", probe.Usage{RAM: 6 << 30})
	mem.Script("b", probe.Usage{RAM: 6 << 30})
	return mem
}

func TestTwoTargetsSideBySide(t *testing.T) {
	hs := serve(t, toolConfig, toolMemory(), true)
	direct := startMock(t, "-model", "direct-a", "-tokens", "4", "-stream-interval", "0")
	o := opts(t, "-target", "hotswap="+hs.url, "-target", "direct="+direct,
		"-model-map", "direct:a=direct-a", "-models", "a", "-users", "3", "-requests", "45", "-json", filepath.Join(t.TempDir(), "r.json"))
	rep := run(t, o)
	if len(rep.Targets) != 2 || rep.Targets[0].Label != "hotswap" || rep.Targets[1].Label != "direct" {
		t.Fatalf("targets %+v", rep.Targets)
	}
	viaHotswap := statsOf(t, hs.url+"/upstream/a/mock/stats")
	viaDirect := statsOf(t, direct+"/mock/stats")
	for i, st := range []mockStats{viaHotswap, viaDirect} {
		tr := rep.Targets[i]
		if tr.Total.Answered != 45 || st.Requests != 45 || tr.Total.OutputTokens != st.Tokens {
			t.Errorf("%s: answered %d with %d tokens; its backend counted %d with %d", tr.Label, tr.Total.Answered, tr.Total.OutputTokens, st.Requests, st.Tokens)
		}
	}
	if m := rep.Targets[1].Models[0]; m.Model != "a" || m.Name != "direct-a" {
		t.Errorf("the direct target's model: %+v", m)
	}
	h := rep.Targets[0].Hotswap
	if h == nil || h.Starts != 1 || h.Evictions != 0 || len(h.Models) != 1 || h.Models[0].Starts != 1 {
		t.Fatalf("hotswap figures: %+v", h)
	}
	if h.WaitLoadingS <= 0 {
		t.Errorf("the first requests waited for a to load: wait_loading_s %v", h.WaitLoadingS)
	}
	if rep.Targets[1].Hotswap != nil {
		t.Errorf("the mock is not hotswap")
	}
}

// Two models that do not fit together, asked for in turn: the report
// counts the swaps, marks them on the timeline, and splits the waits.
func TestSwapsAreCountedAndMarked(t *testing.T) {
	hs := serve(t, toolConfig, toolMemory(), true)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"-target", hs.url, "-models", "a,b", "-users", "4", "-mix",
		"-requests", "40", "-seed", "7", "-json", filepath.Join(dir, "r.json"), "-html", filepath.Join(dir, "r.html")}, &out, &errb)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	rep := readReport(t, filepath.Join(dir, "r.json"))
	tr := rep.Targets[0]
	h := tr.Hotswap
	if tr.Total.Answered != 40 || h == nil {
		t.Fatalf("answered %d, hotswap %+v", tr.Total.Answered, h)
	}
	// The seed gives both models; each swap starts one and evicts the other.
	if h.Starts < 2 || h.Evictions < 1 || h.Evictions > h.Starts {
		t.Errorf("starts %d, evictions %d", h.Starts, h.Evictions)
	}
	starts := map[string]int{}
	for _, m := range h.Marks {
		if m.Type == "start" {
			starts[m.Model]++
		}
		if m.At < 0 || m.At > tr.ElapsedS+1 {
			t.Errorf("mark %+v outside the run (%vs)", m, tr.ElapsedS)
		}
	}
	if starts["a"]+starts["b"] != h.Starts {
		t.Errorf("start marks %v, starts counted %d", starts, h.Starts)
	}
	if h.WaitLoadingS <= 0 {
		t.Errorf("no wait for loading: %+v", h)
	}
	if !strings.Contains(out.String(), "evictions") {
		t.Errorf("summary:\n%s", out.String())
	}
	f, err := os.Open(filepath.Join(dir, "r.html"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := html.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	svgs := 0
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && n.Data == "svg" {
			svgs++
		}
	}
	if svgs != 2 {
		t.Errorf("%d plots in the HTML, want latency and throughput", svgs)
	}
}

// Kinds follow the endpoint: an embedding model gets embeddings, one for
// speech is skipped with a note.
func TestKindsFollowTheEndpoint(t *testing.T) {
	hs := serve(t, toolConfig, toolMemory(), true)
	rep := run(t, opts(t, "-target", hs.url, "-models", "text-embedding-3-small,whisper", "-users", "2", "-requests", "10"))
	if len(rep.Workload.Models) != 1 || rep.Workload.Models[0].Kind != kindEmbedding {
		t.Fatalf("workload %+v", rep.Workload)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "whisper skipped") {
		t.Errorf("notes %q", rep.Notes)
	}
	st := statsOf(t, hs.url+"/upstream/embed/mock/stats")
	if tr := rep.Targets[0]; tr.Total.Answered != 10 || st.Requests != 10 {
		t.Errorf("answered %d, the embedding backend counted %d", tr.Total.Answered, st.Requests)
	}
	// The alias was asked for; hotswap counts it under its model.
	if h := rep.Targets[0].Hotswap; h == nil || h.Models[0].Starts != 1 {
		t.Errorf("hotswap figures %+v", h)
	}
	// Nothing left to send is an error, not an empty report.
	if _, err := Run(context.Background(), opts(t, "-target", hs.url, "-models", "whisper"), nil); err == nil {
		t.Error("a workload of speech models only ran")
	}
}

// Ctrl-C (the context ending) stops the run at once and still reports what
// ran, in-flight requests counted as cancelled.
func TestInterruptedRunReportsWhatRan(t *testing.T) {
	url := startMock(t, "-model", "m", "-tokens", "1000", "-stream-interval", "5ms")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	done := make(chan int, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"-target", url, "-models", "m", "-users", "2", "-stream", "-max-tokens", "1000",
			"-duration", "10m", "-json", filepath.Join(dir, "r.json")}, &out, &errb)
	}()
	if !mocktest.Eventually(10*time.Second, func() bool { return statsOf(t, url+"/mock/stats").Tokens >= 20 }) {
		t.Fatal("no tokens streamed")
	}
	began := time.Now()
	cancel()
	select {
	case code := <-done:
		if code != ExitInterrupted {
			t.Errorf("exit %d, want %d: %s", code, ExitInterrupted, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run went on after Ctrl-C")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("stopping took %v", d)
	}
	rep := readReport(t, filepath.Join(dir, "r.json"))
	tr := rep.Targets[0]
	if !rep.Interrupted || tr.Total.Cancelled != 2 || tr.Total.Errors != 0 || tr.Total.Sent != tr.Total.Answered+tr.Total.Cancelled {
		t.Errorf("interrupted %v: %+v", rep.Interrupted, tr.Total)
	}
}

func TestSameWorkloadForEveryTarget(t *testing.T) {
	one := startMock(t, "-model", "x")
	two := startMock(t, "-model", "y")
	rep := run(t, opts(t, "-target", "one="+one, "-target", "two="+two, "-models", "x:3,y",
		"-mix", "-users", "4", "-requests", "200", "-seed", "42"))
	for i := range rep.Targets[0].Models {
		a, b := rep.Targets[0].Models[i], rep.Targets[1].Models[i]
		if a.Sent != b.Sent {
			t.Errorf("%s: %d sent to one, %d to two", a.Model, a.Sent, b.Sent)
		}
	}
	if x := rep.Targets[0].Models[0].Sent; x < 120 || x > 180 {
		t.Errorf("x has three quarters of the weight, and %d of 200 requests", x)
	}
}

func TestUsersShareModelsByWeight(t *testing.T) {
	w := newWorkload([]model{{Weighted: Weighted{"big", 1}}, {Weighted: Weighted{"small", 0.25}}}, 1, false)
	if got := countUsers(w.forUsers(10), 2); got[0] != 8 || got[1] != 2 {
		t.Errorf("10 users at 1:0.25: %v", got)
	}
	if a, b := w.forUsers(10), w.forUsers(10); !slicesEqual(a, b) {
		t.Errorf("the same seed dealt %v then %v", a, b)
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-models", "m"}, // no target
		{"-target", "127.0.0.1:8080", "-models", "m"},                          // no scheme
		{"-target", "http://h:1/v1/chat", "-models", "m"},                      // a path
		{"-target", "http://h:1"},                                              // no models
		{"-target", "http://h:1", "-models", "m:0"},                            // weight 0
		{"-target", "http://h:1", "-models", "m,m"},                            // twice
		{"-target", "http://h:1", "-models", "m", "-users", "2", "-rate", "1"}, // both loops
		{"-target", "http://h:1", "-models", "m", "-requests", "5", "-duration", "1s"},
		{"-target", "http://h:1", "-models", "m", "-max-error-rate", "2"},
		{"-target", "http://h:1", "-models", "m", "-model-map", "other:m=n"},   // no such label
		{"-target", "a=http://h:1", "-target", "a=http://h:2", "-models", "m"}, // a label twice
		{"-target", "http://h:1", "-models", "m", "-prompt", " "},
	} {
		if _, err := Parse(args, io.Discard); err == nil {
			t.Errorf("%q was accepted", args)
		}
	}
	o := opts(t, "-target", "http://127.0.0.1:1/", "-models", "llama3:8b,llama3:70b:0.5", "-model-map", "127.0.0.1:1:llama3:8b=x")
	if o.Users != 8 || o.Duration != 30*time.Second || o.Targets[0].URL != "http://127.0.0.1:1" {
		t.Errorf("defaults %+v", o)
	}
	if o.Models[0] != (Weighted{"llama3:8b", 1}) || o.Models[1] != (Weighted{"llama3:70b", 0.5}) {
		t.Errorf("models %+v", o.Models)
	}
	if o.name("127.0.0.1:1", "llama3:8b") != "x" {
		t.Errorf("model map %+v", o.ModelMap)
	}
}

func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	draw := progressLine(&b)
	rec := newRecorder(1, time.Now().Add(-10*time.Second))
	for range 25 {
		rec.add(0, time.Now(), &outcome{status: 200})
	}
	rec.add(0, time.Now(), &outcome{status: 503, code: "queue_timeout"})
	l := &Live{Target: Target{Label: "hs"}, Index: 1, N: 2, Start: rec.start, Requests: 104, rec: rec}
	draw(l)
	line := b.String()
	for _, want := range []string{"\r[2/2 hs]", "[######..................]", "26 done, 1 errors", "10s elapsed", "30s left"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "\n") {
		t.Errorf("a line in progress ended: %q", line)
	}
	l.Finished = true
	b.Reset()
	draw(l)
	if !strings.HasSuffix(b.String(), "\n") || !strings.Contains(b.String(), "[########################]") {
		t.Errorf("the last line: %q", b.String())
	}
}
