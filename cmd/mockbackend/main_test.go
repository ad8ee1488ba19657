package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"image/png"
	"io"
	"math"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// TestMain doubles as the command itself when process tests re-run this
// binary with mainEnv set (see process_test.go), and checks for leaked
// goroutines otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer safe to write from the mock's goroutines
// and read from the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a mock served in-process on 127.0.0.1, port 0.
type fixture struct {
	t      *testing.T
	url    string
	m      *mock
	stdout syncBuffer
	stderr syncBuffer
	exits  chan int // what the mock passed to exit, instead of exiting
	client *http.Client
}

// killed is what exits receives when the mock would SIGKILL itself.
const killed = -9

func start(t *testing.T, args ...string) *fixture {
	t.Helper()
	return startOn(t, func(ln net.Listener) net.Listener { return ln }, args...)
}

// startOn is start with the listener wrapped, so that a test can watch the
// connections the mock writes to.
func startOn(t *testing.T, wrap func(net.Listener) net.Listener, args ...string) *fixture {
	t.Helper()
	opts, err := parseFlags(append([]string{"-listen", "127.0.0.1:0"}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		t.Fatal(err)
	}
	ln = wrap(ln)
	f := &fixture{
		t:      t,
		url:    "http://" + ln.Addr().String(),
		exits:  make(chan int, 4),
		client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second},
	}
	f.m = newMock(opts, &f.stdout, &f.stderr, func(code int) { f.exits <- code })
	f.m.kill = func() { f.exits <- killed }
	srv := f.m.server()
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	loaded := make(chan struct{})
	go func() {
		f.m.load(ctx, ln.Addr().String())
		close(loaded)
	}()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		<-loaded
		f.client.CloseIdleConnections()
	})
	return f
}

// do sends a request and returns the answer with its body read.
func (f *fixture) do(method, path, contentType string, body []byte) (*http.Response, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return resp, b
}

func (f *fixture) postJSON(path, body string) (*http.Response, []byte) {
	f.t.Helper()
	return f.do("POST", path, "application/json", []byte(body))
}

// waitReady polls /health until it answers 200.
func (f *fixture) waitReady() {
	f.t.Helper()
	eventually(f.t, "ready", func() bool {
		resp, _ := f.do("GET", "/health", "", nil)
		return resp.StatusCode == 200
	})
}

func (f *fixture) stats() stats {
	f.t.Helper()
	_, body := f.do("GET", "/mock/stats", "", nil)
	var st stats
	if err := json.Unmarshal(body, &st); err != nil {
		f.t.Fatalf("stats %s: %v", body, err)
	}
	return st
}

// eventually waits up to 5s for cond, failing the test if it never holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !mocktest.Eventually(5*time.Second, cond) {
		t.Fatal("timed out waiting for " + what)
	}
}

// apiError decodes an OpenAI error body.
func apiError(t *testing.T, body []byte) (typ, code string) {
	t.Helper()
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not an OpenAI error: %s", body)
	}
	return e.Error.Type, e.Error.Code
}

// event is one server-sent event and when it arrived.
type event struct {
	data string
	at   time.Time
}

// readEvents reads SSE "data:" events until the stream ends.
func readEvents(r io.Reader) ([]event, error) {
	var events []event
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, event{data, time.Now()})
		}
	}
	return events, sc.Err()
}

func TestHealthIsLoadingThenReady(t *testing.T) {
	began := time.Now()
	f := start(t, "-startup", "300ms", "-progress-interval", "50ms", "-model", "llama")

	resp, body := f.do("GET", "/health", "", nil)
	if resp.StatusCode != 503 || strings.TrimSpace(string(body)) != `{"status":"loading"}` {
		t.Errorf("health while loading: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/v1/chat/completions", "/v1/embeddings"} {
		resp, body := f.postJSON(path, `{"model":"llama"}`)
		if typ, code := apiError(t, body); resp.StatusCode != 503 || typ != "unavailable" || code != "loading" {
			t.Errorf("%s while loading: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, _ := f.do("GET", "/v1/models", "", nil); resp.StatusCode != 503 {
		t.Errorf("/v1/models while loading: %d", resp.StatusCode)
	}
	if st := f.stats(); st.Ready || st.Requests != 0 {
		t.Errorf("stats while loading: %+v", st)
	}

	f.waitReady()
	if took := time.Since(began); took < 300*time.Millisecond {
		t.Errorf("ready after %s, before -startup", took)
	}
	resp, body = f.do("GET", "/health", "", nil)
	if strings.TrimSpace(string(body)) != `{"status":"ok"}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("health when ready: %s (%s)", body, resp.Header.Get("Content-Type"))
	}
	out := f.stdout.String()
	if !strings.Contains(out, "loading model llama: ") || !strings.Contains(out, "model llama ready on 127.0.0.1:") {
		t.Errorf("output:\n%s", out)
	}
	if n := strings.Count(out, "loading model"); n < 3 {
		t.Errorf("%d progress lines in 300ms at one per 50ms:\n%s", n, out)
	}
}

func TestChatEcho(t *testing.T) {
	f := start(t, "-tokens", "3", "-model", "flag-model")
	f.waitReady()
	resp, body := f.postJSON("/v1/chat/completions",
		`{"model":"asked","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"ping pong"}]}`)
	var out completion
	if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if out.Model != "asked" || out.Object != "chat.completion" || out.ID != "chatcmpl-mock-1" {
		t.Errorf("answer %s", body)
	}
	if got := out.Choices[0].Message.Content; got != "tok0 tok1 tok2 | echo: ping pong" {
		t.Errorf("content %q", got)
	}
	if *out.Choices[0].FinishReason != "stop" || *out.Usage != (usage{4, 3, 7}) {
		t.Errorf("answer %s", body)
	}
	if resp.Header.Get("X-Mock-Pid") != strconv.Itoa(os.Getpid()) || resp.Header.Get("X-Mock-Model") != "flag-model" {
		t.Errorf("headers %v", resp.Header)
	}

	// max_tokens caps the tokens; content parts are read as text.
	_, body = f.postJSON("/v1/chat/completions",
		`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`)
	if !strings.Contains(string(body), `"content":"tok0 | echo: hi"`) {
		t.Errorf("max_tokens 1: %s", body)
	}

	_, body = f.postJSON("/v1/completions", `{"model":"t","prompt":"once upon"}`)
	if !strings.Contains(string(body), `"object":"text_completion"`) ||
		!strings.Contains(string(body), `"text":"tok0 tok1 tok2 | echo: once upon"`) {
		t.Errorf("text completion: %s", body)
	}
}

func TestStreamIsIncremental(t *testing.T) {
	f := start(t, "-tokens", "4", "-stream-interval", "50ms")
	f.waitReady()
	resp, err := f.client.Post(f.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"s","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("headers %v", resp.Header)
	}
	events, err := readEvents(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// role, 4 tokens, the finish chunk, [DONE]
	if len(events) != 7 || events[6].data != "[DONE]" {
		t.Fatalf("%d events: %+v", len(events), events)
	}
	var content string
	for i, e := range events[:6] {
		var c completion
		if err := json.Unmarshal([]byte(e.data), &c); err != nil || c.Object != "chat.completion.chunk" || c.Model != "s" {
			t.Fatalf("event %d: %s", i, e.data)
		}
		d := c.Choices[0].Delta
		switch {
		case i == 0 && d.Role != "assistant":
			t.Errorf("first chunk %s", e.data)
		case i == 5 && (*c.Choices[0].FinishReason != "stop" || *d != message{}):
			t.Errorf("last chunk %s", e.data)
		case i > 0 && i < 5 && c.Choices[0].FinishReason != nil:
			t.Errorf("chunk %d finished: %s", i, e.data)
		}
		content += d.Content
	}
	if content != "tok0 tok1 tok2 tok3 " {
		t.Errorf("content %q", content)
	}
	// Four 50ms gaps: the events came over time, not in one write.
	if spread := events[6].at.Sub(events[0].at); spread < 150*time.Millisecond {
		t.Errorf("events came within %s: not streamed", spread)
	}
}

func TestTextStream(t *testing.T) {
	f := start(t, "-tokens", "2", "-stream-interval", "1ms")
	f.waitReady()
	resp, err := f.client.Post(f.url+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"t","stream":true,"prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, err := readEvents(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`"text":"tok0 "`, `"text":"tok1 "`, `"finish_reason":"stop"`, `[DONE]`}
	if len(events) != len(want) {
		t.Fatalf("%d events: %+v", len(events), events)
	}
	for i, w := range want {
		if !strings.Contains(events[i].data, w) {
			t.Errorf("event %d %s, want %s", i, events[i].data, w)
		}
	}
}

func TestClientLeavingStopsGeneration(t *testing.T) {
	f := start(t, "-tokens", "1000", "-stream-interval", "20ms")
	f.waitReady()
	resp, err := f.client.Post(f.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"s","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if st := f.stats(); st.InFlight != 1 {
		t.Fatalf("in flight %d while streaming", st.InFlight)
	}
	resp.Body.Close()
	eventually(t, "the stream to stop", func() bool { return f.stats().InFlight == 0 })
}

func TestStatsCountConcurrency(t *testing.T) {
	f := start(t, "-tokens", "3", "-stream-interval", "30ms")
	f.waitReady()
	const n = 3
	var bodies []io.ReadCloser
	for range n {
		resp, err := f.client.Post(f.url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"s","stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bodies = append(bodies, resp.Body)
	}
	if st := f.stats(); st.InFlight != n || st.MaxInFlight != n || st.Requests != n {
		t.Errorf("while streaming: %+v", st)
	}
	for _, b := range bodies {
		io.Copy(io.Discard, b)
	}
	eventually(t, "the streams to end", func() bool { return f.stats().InFlight == 0 })
	f.postJSON("/v1/embeddings", `{"input":"x"}`)
	f.do("GET", "/v1/models", "", nil) // a GET is not counted
	st := f.stats()
	if st.Requests != n+1 || st.MaxInFlight != n || !st.Ready || st.Pid != os.Getpid() || st.Model != "mock" {
		t.Errorf("after: %+v", st)
	}
}

func TestEmbeddings(t *testing.T) {
	f := start(t, "-dim", "5")
	f.waitReady()
	type answer struct {
		Object string
		Model  string
		Data   []struct {
			Object    string
			Index     int
			Embedding json.RawMessage
		}
	}
	var a answer
	_, body := f.postJSON("/v1/embeddings", `{"model":"e","input":["a","b","a"]}`)
	if err := json.Unmarshal(body, &a); err != nil || a.Object != "list" || a.Model != "e" || len(a.Data) != 3 {
		t.Fatalf("embeddings %s", body)
	}
	vecs := make([][]float32, 3)
	for i, d := range a.Data {
		if json.Unmarshal(d.Embedding, &vecs[i]) != nil || len(vecs[i]) != 5 || d.Index != i || d.Object != "embedding" {
			t.Fatalf("entry %d: %s", i, body)
		}
	}
	if string(a.Data[0].Embedding) != string(a.Data[2].Embedding) || string(a.Data[0].Embedding) == string(a.Data[1].Embedding) {
		t.Errorf("not deterministic per text: %s", body)
	}

	// A single string; base64 as OpenAI's Python client asks for it.
	_, body = f.postJSON("/v1/embeddings", `{"model":"e","input":"a","encoding_format":"base64"}`)
	if err := json.Unmarshal(body, &a); err != nil || len(a.Data) != 1 {
		t.Fatalf("base64 embeddings %s", body)
	}
	var b64 string
	json.Unmarshal(a.Data[0].Embedding, &b64)
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 5*4 {
		t.Fatalf("base64 %q: %v", b64, err)
	}
	for i := range 5 {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); got != vecs[0][i] {
			t.Errorf("base64 component %d = %v, want %v", i, got, vecs[0][i])
		}
	}

	if resp, body := f.postJSON("/v1/embeddings", `{"model":"e","input":7}`); resp.StatusCode != 400 {
		t.Errorf("bad input: %d %s", resp.StatusCode, body)
	}
}

func TestTranscription(t *testing.T) {
	f := start(t)
	f.waitReady()
	form := func(file bool, format string) (string, []byte) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		if file {
			fw, _ := w.CreateFormFile("file", "meeting.wav")
			fw.Write(make([]byte, 1234))
		}
		w.WriteField("model", "whisper")
		if format != "" {
			w.WriteField("response_format", format)
		}
		w.Close()
		return w.FormDataContentType(), b.Bytes()
	}
	const want = "mock transcript of meeting.wav (1234 bytes)"

	ct, body := form(true, "")
	resp, out := f.do("POST", "/v1/audio/transcriptions", ct, body)
	var j struct{ Text string }
	if json.Unmarshal(out, &j); resp.StatusCode != 200 || j.Text != want {
		t.Errorf("json: %d %s", resp.StatusCode, out)
	}
	ct, body = form(true, "text")
	resp, out = f.do("POST", "/v1/audio/transcriptions", ct, body)
	if strings.TrimSpace(string(out)) != want || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("text: %s %q", resp.Header.Get("Content-Type"), out)
	}
	ct, body = form(false, "")
	resp, out = f.do("POST", "/v1/audio/transcriptions", ct, body)
	if _, code := apiError(t, out); resp.StatusCode != 400 || code != "missing_file" {
		t.Errorf("no file: %d %s", resp.StatusCode, out)
	}
}

func TestSpeechImagesRerank(t *testing.T) {
	f := start(t)
	f.waitReady()

	resp, wavBody := f.postJSON("/v1/audio/speech", `{"model":"tts","input":"hello","voice":"x"}`)
	// 44-byte header, then 5 characters of 10ms at 16 kHz, 2 bytes each.
	if resp.Header.Get("Content-Type") != "audio/wav" || len(wavBody) != 44+5*160*2 ||
		string(wavBody[:4]) != "RIFF" || string(wavBody[8:16]) != "WAVEfmt " ||
		binary.LittleEndian.Uint32(wavBody[4:]) != uint32(len(wavBody)-8) ||
		binary.LittleEndian.Uint32(wavBody[40:]) != uint32(len(wavBody)-44) {
		t.Errorf("speech: %s, %d bytes %.16q", resp.Header.Get("Content-Type"), len(wavBody), wavBody)
	}

	_, body := f.postJSON("/v1/images/generations", `{"model":"sd","prompt":"a cat","n":2,"size":"8x8"}`)
	var img struct {
		Created int64
		Data    []struct {
			B64JSON string `json:"b64_json"`
		}
	}
	if err := json.Unmarshal(body, &img); err != nil || len(img.Data) != 2 || img.Created == 0 {
		t.Fatalf("images %.200s", body)
	}
	raw, _ := base64.StdEncoding.DecodeString(img.Data[1].B64JSON)
	if _, err := png.Decode(bytes.NewReader(raw)); err != nil {
		t.Errorf("not a PNG: %v", err)
	}

	_, body = f.postJSON("/v1/rerank", `{"model":"r","query":"cats","documents":["dogs","cats","fish"]}`)
	var rr struct {
		Model   string
		Results []struct {
			Index int
			Score float64 `json:"relevance_score"`
		}
	}
	if err := json.Unmarshal(body, &rr); err != nil || rr.Model != "r" || len(rr.Results) != 3 {
		t.Fatalf("rerank %s", body)
	}
	if rr.Results[0].Index != 1 || math.Abs(rr.Results[0].Score-1) > 1e-6 ||
		rr.Results[1].Score < rr.Results[2].Score {
		t.Errorf("rerank not sorted with the query itself first: %s", body)
	}
}

func TestErrors(t *testing.T) {
	f := start(t)
	f.waitReady()
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/v2/nothing", "", 404, "not_found"},
		{"GET", "/v1/chat/completions", "", 405, "method_not_allowed"},
		{"POST", "/health", "", 405, "method_not_allowed"},
		{"POST", "/v1/models", "{}", 405, "method_not_allowed"},
		{"POST", "/v1/chat/completions", `{"model":`, 400, "invalid_json"},
		{"POST", "/v1/images/generations", `{"n":99}`, 400, "invalid_n"},
		{"POST", "/v1/audio/speech", `{"model":"tts"}`, 400, "missing_input"},
	}
	for _, c := range cases {
		resp, body := f.do(c.method, c.path, "application/json", []byte(c.body))
		if _, code := apiError(t, body); resp.StatusCode != c.status || code != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, resp.StatusCode, body, c.status, c.code)
		}
		if resp.Header.Get("X-Mock-Pid") == "" {
			t.Errorf("%s %s: no X-Mock-Pid", c.method, c.path)
		}
	}
}

func TestLatency(t *testing.T) {
	f := start(t, "-latency", "150ms")
	f.waitReady()
	began := time.Now()
	f.postJSON("/v1/embeddings", `{"input":"x"}`)
	if took := time.Since(began); took < 150*time.Millisecond {
		t.Errorf("answered in %s despite -latency 150ms", took)
	}
}

// TestCrashAfter runs crashes in-process: the fixture's exit records the
// status, and the handler cuts the connection as a dead process would.
func TestCrashAfter(t *testing.T) {
	f := start(t, "-crash-after", "2")
	f.waitReady()
	if resp, _ := f.postJSON("/v1/embeddings", `{"input":"x"}`); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	if _, err := f.client.Post(f.url+"/v1/embeddings", "application/json", strings.NewReader(`{"input":"x"}`)); err == nil {
		t.Error("the crashing request got an answer")
	}
	if code := <-f.exits; code != 3 {
		t.Errorf("exit status %d", code)
	}
	if !strings.Contains(f.stderr.String(), "crashing") {
		t.Errorf("stderr %q", f.stderr.String())
	}
}

func TestCrashMidStream(t *testing.T) {
	// The role chunk, then crashChunks tokens, or fewer if there are fewer.
	for tokens, want := range map[string]int{"8": 1 + crashChunks, "1": 2} {
		t.Run("tokens="+tokens, func(t *testing.T) {
			f := start(t, "-crash-after", "1", "-tokens", tokens, "-stream-interval", "1ms")
			f.waitReady()
			resp, err := f.client.Post(f.url+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"c","stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			events, err := readEvents(resp.Body)
			if err == nil {
				t.Error("the stream ended cleanly")
			}
			if len(events) != want {
				t.Errorf("%d events before the crash, want %d: %+v", len(events), want, events)
			}
			if code := <-f.exits; code != 3 {
				t.Errorf("exit status %d", code)
			}
		})
	}
}

func TestFailStart(t *testing.T) {
	f := start(t, "-fail-start", "-startup", "50ms", "-model", "big")
	if code := <-f.exits; code != 1 {
		t.Errorf("exit status %d", code)
	}
	if got := f.stderr.String(); got != "error: failed to load model big: out of memory (mock)\n" {
		t.Errorf("stderr %q", got)
	}
	if resp, _ := f.do("GET", "/health", "", nil); resp.StatusCode != 503 {
		t.Errorf("health after a failed load: %d", resp.StatusCode)
	}
}

func TestFailStartSaysWhy(t *testing.T) {
	f := start(t, "-fail-start", "-fail-message", "error: invalid argument: --bogus", "-fail-status", "0")
	if code := <-f.exits; code != 0 {
		t.Errorf("exit status %d", code)
	}
	if got := f.stderr.String(); got != "error: invalid argument: --bogus\n" {
		t.Errorf("stderr %q", got)
	}
	k := start(t, "-fail-start", "-fail-kill")
	if code := <-k.exits; code != killed {
		t.Errorf("-fail-kill ended with %d, want a SIGKILL", code)
	}
	if got := k.stderr.String(); got != "" {
		t.Errorf("a killed load printed %q", got)
	}
}

func TestFlags(t *testing.T) {
	good := []struct {
		args []string
		want func(options) bool
	}{
		{[]string{"-port", "9001"}, func(o options) bool { return o.listen == "127.0.0.1:9001" && o.model == "mock" && o.tokens == 8 }},
		{[]string{"-listen", "[::1]:0", "-hold", "1.5KiB"}, func(o options) bool { return o.listen == "[::1]:0" && o.hold == 1536 }},
		{[]string{"-port", "1", "-hold", "300MiB", "-tokens", "0"}, func(o options) bool { return o.hold == 300<<20 && o.tokens == 0 }},
		{[]string{"-port", "1"}, func(o options) bool { return o.errorEvery == 0 && o.errorStatus == 500 }},
		{[]string{"-port", "1", "-error-every", "3", "-error-status", "429"}, func(o options) bool { return o.errorEvery == 3 && o.errorStatus == 429 }},
	}
	for _, c := range good {
		o, err := parseFlags(c.args, io.Discard)
		if err != nil || !c.want(o) {
			t.Errorf("%q: %+v, %v", c.args, o, err)
		}
	}
	bad := [][]string{
		{},
		{"-model", "x"},
		{"-port", "70000"},
		{"-listen", "0.0.0.0:9001"},
		{"-listen", "127.0.0.1:1", "-port", "2"},
		{"-port", "1", "-hold", "lots"},
		{"-port", "1", "-tokens", "-1"},
		{"-port", "1", "-dim", "0"},
		{"-port", "1", "-error-every", "-1"},
		{"-port", "1", "-error-status", "200"},
		{"-port", "1", "-error-status", "600"},
		{"-port", "1", "-startup", "-1s"},
		{"-port", "1", "-nope"},
		{"-port", "1", "extra"},
	}
	for _, args := range bad {
		var out bytes.Buffer
		if _, err := parseFlags(args, &out); err == nil || !strings.Contains(out.String(), "usage:") {
			t.Errorf("%q: accepted, or no usage: %v %q", args, err, out.String())
		}
		// The problem is the last line, as real backends print theirs.
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "error: ") {
			t.Errorf("%q: last line %q", args, last)
		}
	}
}
