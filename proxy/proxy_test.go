package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

// baseConfig has models of every shape the tests need. Ports come from a
// range no other test package uses, so packages can run side by side.
const baseConfig = `
ports: 20000-20999
health_timeout: 10s
stop_timeout: 2s
max_body: 64KiB
scheduling:
  queue_size: 256
  queue_timeout: 30s
models:
  chat-a:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 300ms -progress-interval 0
    aliases: [gpt-test]
    parallel: 4
    memory: {ram: 6GiB}
  chat-b:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 100ms -progress-interval 0
    parallel: 4
    memory: {ram: 6GiB}
  slow-stream:
    cmd: MOCK -port ${PORT} -model ${MODEL} -stream-interval 100ms -tokens 10
  embed:
    cmd: [MOCK, -port, "${PORT}", -model, "${MODEL}", -dim, "4"]
    kind: embedding
  broken:
    cmd: MOCK -port ${PORT} -model ${MODEL} -fail-start -startup 50ms
  hung:
    cmd: MOCK -port ${PORT} -model ${MODEL} -hang
    health_timeout: 500ms
  crashy:
    cmd: MOCK -port ${PORT} -model ${MODEL} -crash-after 1 -stream-interval 50ms
  giant:
    cmd: MOCK -port ${PORT} -model ${MODEL}
    memory: {ram: 64GiB}
`

func TestColdStartThenWarmReuse(t *testing.T) {
	s := newStack(t, baseConfig)
	if st := s.status("chat-a"); st.State != swapper.Stopped {
		t.Fatalf("before any request chat-a is %v", st.State)
	}
	first := s.chat("chat-a", "hello")
	if first.status != 200 {
		t.Fatalf("status %d: %s", first.status, first.body)
	}
	if ct := first.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	body := first.json(t)
	if body["model"] != "chat-a" || body["object"] != "chat.completion" {
		t.Errorf("unexpected body %s", first.body)
	}
	msg := body["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"].(string)
	if !strings.HasSuffix(msg, "echo: hello") {
		t.Errorf("the backend did not get our message: %q", msg)
	}
	pid := first.header.Get("X-Mock-Pid")

	second := s.chat("chat-a", "again")
	if second.status != 200 {
		t.Fatalf("status %d: %s", second.status, second.body)
	}
	if got := second.header.Get("X-Mock-Pid"); got != pid {
		t.Errorf("second request served by pid %s, first by %s: backend not reused", got, pid)
	}
	if n := s.starts.Starts(); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	if st := s.status("chat-a"); st.State != swapper.Ready || fmt.Sprint(st.Pid) != pid {
		t.Errorf("status after requests: %+v", st)
	}
}

func TestModelsListAndAliases(t *testing.T) {
	s := newStack(t, baseConfig)
	r := s.do("GET", "/v1/models", "", nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string   `json:"id"`
			Object  string   `json:"object"`
			Created int64    `json:"created"`
			OwnedBy string   `json:"owned_by"`
			Aliases []string `json:"aliases"`
			State   string   `json:"state"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" {
		t.Errorf("object %q", list.Object)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.Created == 0 || m.OwnedBy == "" || m.State != "stopped" {
			t.Errorf("model entry %+v", m)
		}
	}
	want := "chat-a chat-b slow-stream embed broken hung crashy giant"
	if strings.Join(ids, " ") != want {
		t.Errorf("ids %v, want %s (file order)", ids, want)
	}

	// An alias reaches the model it names, and the body goes unchanged.
	a := s.chat("gpt-test", "via alias")
	if a.status != 200 {
		t.Fatalf("alias: status %d: %s", a.status, a.body)
	}
	if got := a.header.Get("X-Mock-Model"); got != "chat-a" {
		t.Errorf("alias served by %q", got)
	}
	if a.json(t)["model"] != "gpt-test" {
		t.Errorf("the request body was rewritten: %s", a.body)
	}

	one := s.do("GET", "/v1/models/gpt-test", "", nil)
	if one.status != 200 || one.json(t)["id"] != "chat-a" || one.json(t)["state"] != "ready" {
		t.Errorf("GET /v1/models/gpt-test: %d %s", one.status, one.body)
	}
	// What hotswap knows of it: the scripted 6GiB in use, on RAM, once
	// it has been measured (just after it was ready).
	var detail struct {
		Pid    int
		Device string
		Need   struct{ RAM int64 }
		Usage  struct{ RAM int64 }
	}
	mocktest.Eventually(5*time.Second, func() bool {
		one = s.do("GET", "/v1/models/gpt-test", "", nil)
		json.Unmarshal(one.body, &detail)
		return detail.Usage.RAM != 0
	})
	if detail.Pid == 0 || detail.Device != "ram" || detail.Need.RAM != 6<<30 || detail.Usage.RAM != 6<<30 {
		t.Errorf("model detail %s", one.body)
	}
}

func TestConcurrentColdRequestsStartOnce(t *testing.T) {
	s := newStack(t, baseConfig)
	const n = 50
	var wg sync.WaitGroup
	results := make([]response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.chat("chat-a", fmt.Sprint("req ", i))
		}()
	}
	wg.Wait()
	pids := map[string]bool{}
	for i, r := range results {
		if r.status != 200 {
			t.Fatalf("request %d: status %d: %s", i, r.status, r.body)
		}
		if !strings.Contains(string(r.body), fmt.Sprintf("echo: req %d", i)) {
			t.Errorf("request %d got someone else's answer: %s", i, r.body)
		}
		pids[r.header.Get("X-Mock-Pid")] = true
	}
	if s.starts.Starts() != 1 || len(pids) != 1 {
		t.Errorf("%d starts, %d backend pids; want exactly one", s.starts.Starts(), len(pids))
	}
}

func TestStreamingArrivesIncrementally(t *testing.T) {
	s := newStack(t, baseConfig)
	resp, events, err := s.stream("slow-stream", nil)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// role chunk, 10 tokens, a finish chunk, [DONE]
	if len(events) != 13 {
		t.Fatalf("%d events, want 13: %v", len(events), events)
	}
	if events[len(events)-1].data != "[DONE]" {
		t.Errorf("stream did not end with [DONE]: %q", events[len(events)-1].data)
	}
	for _, e := range events[:len(events)-1] {
		var chunk map[string]any
		if err := json.Unmarshal([]byte(e.data), &chunk); err != nil || chunk["object"] != "chat.completion.chunk" {
			t.Errorf("bad chunk %q", e.data)
		}
	}
	// The mock sends a token every 100ms. Buffering anywhere would deliver
	// them together; streaming spreads them over about a second.
	spread := events[len(events)-1].at.Sub(events[0].at)
	if spread < 500*time.Millisecond {
		t.Errorf("events arrived within %s of each other: the answer was buffered", spread)
	}
}

func TestErrorsInOpenAIFormat(t *testing.T) {
	s := newStack(t, baseConfig)
	big := bytes.Repeat([]byte("x"), 100<<10)
	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		code        string
		mention     string
	}{
		{"malformed JSON", "POST", "/v1/chat/completions", "application/json", `{"model": "chat-a",`, 400, "invalid_json", "JSON"},
		{"not an object", "POST", "/v1/chat/completions", "application/json", `["chat-a"]`, 400, "invalid_json", "object"},
		{"empty body", "POST", "/v1/chat/completions", "application/json", ``, 400, "invalid_request", "empty"},
		{"missing model", "POST", "/v1/chat/completions", "application/json", `{"messages": []}`, 400, "missing_model", "model"},
		{"model not a string", "POST", "/v1/embeddings", "application/json", `{"model": 7}`, 400, "invalid_json", "string"},
		{"unknown model", "POST", "/v1/chat/completions", "application/json", `{"model": "nope"}`, 404, "model_not_found", "chat-a, chat-b"},
		{"unknown model by id", "GET", "/v1/models/nope", "", ``, 404, "model_not_found", "nope"},
		{"wrong method", "GET", "/v1/chat/completions", "", ``, 405, "method_not_allowed", "POST"},
		{"no model on a GET", "GET", "/v1/audio/voices", "", ``, 404, "not_found", "?model="},
		{"unknown model in the query", "GET", "/v1/audio/voices?model=nope", "", ``, 404, "model_not_found", "nope"},
		{"unknown path", "POST", "/v2/chat", "application/json", `{"model":"chat-a"}`, 404, "not_found", "/v2/chat"},
		{"missing model on a new endpoint", "POST", "/v1/responses", "application/json", `{"input":"hi"}`, 400, "missing_model", "model"},
		{"malformed JSON sent as a form", "POST", "/v1/chat/completions", "application/x-www-form-urlencoded", `{"model": `, 400, "invalid_json", "JSON"},
		{"empty PUT", "PUT", "/v1/whatever", "", ``, 400, "invalid_request", "empty"},
		{"multipart without model", "POST", "/v1/audio/transcriptions", "multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--XX--\r\n", 400, "missing_model", "model"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(c.method, c.path, c.contentType, []byte(c.body))
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			msg, typ, code := r.apiError(t)
			if code != c.code || typ == "" || !strings.Contains(msg, c.mention) {
				t.Errorf("error %q/%q/%q; want code %q mentioning %q", msg, typ, code, c.code, c.mention)
			}
		})
	}

	// A body over max_body, from a client that waits for "100 Continue"
	// before sending it, as curl does for large uploads: what such a client
	// reads is the 413, naming the limit. (That no 100 Continue goes out
	// first is TestBodyTooLargeIsRefusedBeforeItIsSent's, on a raw socket.)
	req, err := http.NewRequest("POST", s.url+"/v1/chat/completions",
		bytes.NewReader([]byte(`{"model":"chat-a","x":"`+string(big)+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Expect", "100-continue")
	c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := response{status: resp.StatusCode, header: resp.Header, body: body}
	if msg, _, code := r.apiError(t); r.status != 413 || code != "request_too_large" || !strings.Contains(msg, "64KiB") {
		t.Errorf("body over max_body: %d %s", r.status, body)
	}
	if n := s.starts.Starts(); n != 0 {
		t.Errorf("bad requests started %d backends", n)
	}
}

// TestBackendThatFailsToStart: a failed start is answered 503 with the
// backend's last words, and refused without another start until its
// back-off ends; Retry-After says when that is, on hotswap's clock (here a
// fake one: the swapper's back-off and the proxy's Retry-After go by the
// same time), rounded up so that a client never comes back too early.
func TestBackendThatFailsToStart(t *testing.T) {
	fc := fakeClock()
	s := newStackOn(t, baseConfig, fc)
	r := s.chat("broken", "hi")
	if r.status != 503 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	msg, _, code := r.apiError(t)
	if code != "backend_start_failed" || !strings.Contains(msg, "out of memory (mock)") {
		t.Errorf("error %q (%s): want the backend's own last words", msg, code)
	}
	// The swapper's first back-off is 10s.
	if got := r.header.Get("Retry-After"); got != "10" {
		t.Errorf("Retry-After %q, want 10", got)
	}
	// The next requests are refused at once, not another doomed start,
	// and told what is left of the back-off.
	for _, step := range []struct {
		advance time.Duration
		want    string
	}{{4 * time.Second, "6"}, {6*time.Second - time.Millisecond, "1"}} {
		fc.Advance(step.advance)
		again := s.chat("broken", "hi")
		if again.status != 503 || again.header.Get("Retry-After") != step.want {
			t.Errorf("%s later: %d, Retry-After %q, want 503 and %s: %s", step.advance, again.status,
				again.header.Get("Retry-After"), step.want, again.body)
		}
	}
	if n := s.starts.Starts(); n != 1 {
		t.Errorf("%d starts, want 1 (back-off)", n)
	}
	// The back-off is over: the model is tried again, and fails again,
	// and backs off twice as long.
	fc.Advance(time.Millisecond)
	third := s.chat("broken", "hi")
	if _, _, code := third.apiError(t); third.status != 503 || code != "backend_start_failed" || third.header.Get("Retry-After") != "20" {
		t.Errorf("after the back-off: %d %s, Retry-After %q, want another failed start and 20", third.status, code, third.header.Get("Retry-After"))
	}
	if n := s.starts.Starts(); n != 2 {
		t.Errorf("%d starts, want 2: one once the back-off ended", n)
	}
	// Other models are unaffected.
	if ok := s.chat("chat-b", "hi"); ok.status != 200 {
		t.Errorf("chat-b after a failed start: %d %s", ok.status, ok.body)
	}
}

func TestBackendThatNeverGetsHealthy(t *testing.T) {
	s := newStack(t, baseConfig)
	r := s.chat("hung", "hi")
	if r.status != 503 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	msg, _, code := r.apiError(t)
	if code != "backend_start_failed" || !strings.Contains(msg, "did not become healthy") {
		t.Errorf("error %q (%s)", msg, code)
	}
	if st := s.status("hung"); st.State != swapper.Stopped || st.Pid != 0 {
		t.Errorf("hung backend left as %+v", st)
	}
}

func TestBackendDiesMidRequest(t *testing.T) {
	s := newStack(t, baseConfig)
	r := s.chat("crashy", "hi")
	if r.status != 502 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if _, _, code := r.apiError(t); code != "backend_died" {
		t.Errorf("code %q", code)
	}
	// hotswap notices, and starts it again for the next request.
	if !mocktest.Eventually(5*time.Second, func() bool { return s.status("crashy").State == swapper.Stopped }) {
		t.Fatalf("crash not noticed: %+v", s.status("crashy"))
	}
	starts := s.starts.Starts()
	again := s.chat("crashy", "again")
	// crash-after 1 crashes every process on its first request: a new
	// process was started, and it died the same way.
	if n := s.starts.Starts(); n != starts+1 {
		t.Errorf("%d starts for the request after the crash, want 1", n-starts)
	}
	if _, _, code := again.apiError(t); again.status != 502 || code != "backend_died" {
		t.Errorf("the restarted backend: %d %s", again.status, again.body)
	}
	// And hotswap itself goes on.
	if ok := s.chat("chat-b", "still there?"); ok.status != 200 {
		t.Errorf("after a crash: %d %s", ok.status, ok.body)
	}
}

func TestBackendKilledMidStream(t *testing.T) {
	s := newStack(t, baseConfig)
	resp, events, err := s.stream("crashy", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The status line went out before the crash, so the stream must end
	// with an error event that OpenAI clients raise, not be cut.
	if err != nil {
		t.Errorf("the stream was cut (%v) instead of ending with an error event", err)
	}
	if len(events) == 0 {
		t.Fatal("no events before the crash")
	}
	last := events[len(events)-1].data
	if last == "[DONE]" {
		t.Fatal("stream claims to be complete")
	}
	if !strings.Contains(last, `"backend_died"`) {
		t.Errorf("no error event at the end: last event %q", last)
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return s.status("crashy").State == swapper.Stopped }) {
		t.Fatalf("crash not noticed: %+v", s.status("crashy"))
	}
	if ok := s.chat("chat-b", "still there?"); ok.status != 200 {
		t.Errorf("after a crash: %d %s", ok.status, ok.body)
	}
}

// TestSwitchingModels: chat-a and chat-b do not fit together (scripted
// memory), so asking for one stops the other.
func TestSwitchingModels(t *testing.T) {
	s := newStack(t, baseConfig)
	a := s.chat("chat-a", "one")
	b := s.chat("chat-b", "two")
	if a.status != 200 || b.status != 200 {
		t.Fatalf("statuses %d %d", a.status, b.status)
	}
	if a.header.Get("X-Mock-Model") != "chat-a" || b.header.Get("X-Mock-Model") != "chat-b" {
		t.Errorf("served by %q and %q", a.header.Get("X-Mock-Model"), b.header.Get("X-Mock-Model"))
	}
	if st := s.status("chat-a"); st.State != swapper.Stopped {
		t.Errorf("chat-a still %v after switching to chat-b", st.State)
	}
	var pidA int
	fmt.Sscan(a.header.Get("X-Mock-Pid"), &pidA)
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(pidA) }) {
		t.Errorf("chat-a's process %d still alive", pidA)
	}
	again := s.chat("chat-a", "three")
	if again.status != 200 || again.header.Get("X-Mock-Pid") == a.header.Get("X-Mock-Pid") {
		t.Errorf("back to chat-a: %d, pid %s", again.status, again.header.Get("X-Mock-Pid"))
	}
}

func TestClientHangsUpMidStream(t *testing.T) {
	s := newStack(t, baseConfig)
	b, _ := json.Marshal(map[string]any{"model": "slow-stream", "stream": true,
		"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	buf := make([]byte, 4096)
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	if st := s.status("slow-stream"); st.InFlight != 1 {
		t.Fatalf("in flight %d, want 1", st.InFlight)
	}
	conn.Close()
	// The lease is freed, and the backend is told (its connection closes),
	// long before the 1s stream would have ended.
	if !mocktest.Eventually(5*time.Second, func() bool { return s.status("slow-stream").InFlight == 0 }) {
		t.Fatal("lease still held after the client left")
	}
	upstream := s.status("slow-stream").Upstream
	if !mocktest.Eventually(5*time.Second, func() bool {
		resp, err := http.Get(upstream + "/mock/stats")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			InFlight int `json:"in_flight"`
		}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.InFlight == 0
	}) {
		t.Error("the backend is still generating for a client that left")
	}
}

func TestOtherEndpointsForwarded(t *testing.T) {
	s := newStack(t, baseConfig)

	emb := s.postJSON("/v1/embeddings", map[string]any{"model": "embed", "input": []string{"a", "b"}})
	if emb.status != 200 || len(emb.json(t)["data"].([]any)) != 2 {
		t.Errorf("embeddings: %d %s", emb.status, emb.body)
	}

	// Multipart: the model field comes after the file, as some clients send it.
	var form bytes.Buffer
	w := multipart.NewWriter(&form)
	fw, _ := w.CreateFormFile("file", "meeting.wav")
	fw.Write(bytes.Repeat([]byte{1}, 5000))
	w.WriteField("model", "embed")
	w.Close()
	tr := s.do("POST", "/v1/audio/transcriptions", w.FormDataContentType(), form.Bytes())
	if tr.status != 200 || !strings.Contains(string(tr.body), "meeting.wav (5000 bytes)") {
		t.Errorf("transcription: %d %s", tr.status, tr.body)
	}

	sp := s.postJSON("/v1/audio/speech", map[string]any{"model": "embed", "input": "hello there", "voice": "x"})
	if sp.status != 200 || sp.header.Get("Content-Type") != "audio/wav" || !bytes.HasPrefix(sp.body, []byte("RIFF")) {
		t.Errorf("speech: %d %q %.20q", sp.status, sp.header.Get("Content-Type"), sp.body)
	}
	img := s.postJSON("/v1/images/generations", map[string]any{"model": "embed", "prompt": "a cat", "n": 2})
	if img.status != 200 || len(img.json(t)["data"].([]any)) != 2 {
		t.Errorf("images: %d %.200s", img.status, img.body)
	}
	comp := s.postJSON("/v1/completions", map[string]any{"model": "embed", "prompt": "once"})
	if comp.status != 200 || comp.json(t)["object"] != "text_completion" {
		t.Errorf("completions: %d %s", comp.status, comp.body)
	}
	rr := s.postJSON("/v1/rerank", map[string]any{"model": "embed", "query": "q", "documents": []string{"x", "y"}})
	if rr.status != 200 {
		t.Errorf("rerank: %d %s", rr.status, rr.body)
	}
	if n := s.starts.Starts(); n != 1 {
		t.Errorf("%d starts for one model", n)
	}
}

func TestAPIKeys(t *testing.T) {
	s := newStack(t, "api_keys: [sekret]\n"+baseConfig)
	none := s.do("GET", "/v1/models", "", nil)
	if none.status != 401 {
		t.Fatalf("without a key: %d", none.status)
	}
	if _, _, code := none.apiError(t); code != "invalid_api_key" {
		t.Errorf("code %q", code)
	}
	if bad := s.do("GET", "/v1/models", "", nil, "Authorization", "Bearer wrong"); bad.status != 401 {
		t.Errorf("wrong key: %d", bad.status)
	}
	if ok := s.do("GET", "/v1/models", "", nil, "Authorization", "Bearer sekret"); ok.status != 200 {
		t.Errorf("right key: %d", ok.status)
	}
	if h := s.do("GET", "/health", "", nil); h.status != 200 {
		t.Errorf("hotswap's health needs no key: %d", h.status)
	}
}

func TestRequestLogLine(t *testing.T) {
	s := newStack(t, baseConfig)
	if r := s.chat("chat-b", "log me"); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if r := s.chat("nope", "log me"); r.status != 404 {
		t.Fatalf("status %d", r.status)
	}
	var got []string
	for _, e := range s.logs.FilterMessage("request").All() {
		f := e.ContextMap()
		if _, ok := f["took"]; !ok {
			t.Errorf("request line without duration: %v", f)
		}
		got = append(got, fmt.Sprintf("%v %v", f["model"], f["status"]))
	}
	if strings.Join(got, ",") != "chat-b 200,nope 404" {
		t.Errorf("request lines %q", got)
	}
	if len(s.logs.FilterMessage("backend ready").All()) != 1 {
		t.Error("no 'backend ready' line")
	}
	if !mocktest.Eventually(5*time.Second, func() bool {
		return s.logs.FilterLoggerName("backend").FilterField(zapString("model", "chat-b")).Len() > 0
	}) {
		t.Error("backend output is not logged with its model")
	}
}

func TestModelThatCanNeverFit(t *testing.T) {
	s := newStack(t, baseConfig)
	if r := s.chat("chat-a", "hi"); r.status != 200 {
		t.Fatalf("chat-a: %d", r.status)
	}
	r := s.chat("giant", "hi")
	if r.status != 503 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	msg, _, code := r.apiError(t)
	for _, want := range []string{"giant", "64GiB", "ram", "4GiB is free"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %q", msg, want)
		}
	}
	if code != "insufficient_memory" {
		t.Errorf("code %q", code)
	}
	if st := s.status("chat-a"); st.State != swapper.Ready || s.starts.Starts() != 1 {
		t.Errorf("a refusal evicted or started something: chat-a %v, %d starts", st.State, s.starts.Starts())
	}
}
