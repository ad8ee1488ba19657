package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

// llama.cpp's router API for models (GET /models, POST /models/load and
// /models/unload, GET /models/sse), served by hotswap in front of real mock
// backends, with the control plane and the event hub wired in as
// cmd/hotswap wires them.

const llamaConfig = `
ports: 31200-31299
health_timeout: 10s
stop_timeout: 2s
api_keys: [user-key]
admin_keys: [admin-key]
models:
  slow:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 400ms -progress-interval 0
    aliases: [slow-alias]
    capabilities: [text, image]
    variants:
      slow-v: {params: {set: {temperature: 0}}, aliases: [slow-v-alias]}
      slow-hidden: {params: {set: {temperature: 1}}, unlisted: true}
  quick:
    cmd: MOCK -port ${PORT} -model ${MODEL} -progress-interval 0
  streamer:
    cmd: MOCK -port ${PORT} -model ${MODEL} -tokens 60 -stream-interval 50ms -progress-interval 0
  broken:
    cmd: MOCK -port ${PORT} -model ${MODEL} -fail-start -fail-message "broken on purpose" -progress-interval 0
  crashy:
    cmd: MOCK -port ${PORT} -model ${MODEL} -crash-after 1 -progress-interval 0
  secret:
    cmd: MOCK -port ${PORT} -model ${MODEL} -progress-interval 0
    unlisted: true
`

const (
	userKey  = "Authorization"
	asUser   = "Bearer user-key"
	asAdmin  = "Bearer admin-key"
	jsonType = "application/json"
)

// newLlamaStack is newStack with the control plane (/admin, load and
// unload) and the event hub, as cmd/hotswap has them.
func newLlamaStack(t *testing.T) *stack {
	t.Helper()
	s, _ := newStackWith(t, llamaConfig, stackOptions{control: true})
	return s
}

// llamaEntry is what a client reads of one entry of GET /models.
type llamaEntry struct {
	ID      string   `json:"id"`
	Aliases []string `json:"aliases"`
	Tags    []string `json:"tags"`
	Object  string   `json:"object"`
	OwnedBy string   `json:"owned_by"`
	Created int64    `json:"created"`
	Status  struct {
		Value    string `json:"value"`
		Failed   bool   `json:"failed"`
		ExitCode *int   `json:"exit_code"`
		Message  string `json:"message"`
	} `json:"status"`
	Architecture struct {
		InputModalities  []string `json:"input_modalities"`
		OutputModalities []string `json:"output_modalities"`
	} `json:"architecture"`
	Source    string `json:"source"`
	CanRemove *bool  `json:"can_remove"`
	State     string `json:"state"`
	VariantOf string `json:"variant_of"`
}

// llamaList is GET /models, by id, with the ids in order.
func (s *stack) llamaList(t *testing.T) (map[string]llamaEntry, []string) {
	t.Helper()
	r := s.do("GET", "/models", "", nil, userKey, asUser)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), jsonType) {
		t.Fatalf("GET /models: %d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var list struct {
		Object string       `json:"object"`
		Data   []llamaEntry `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || list.Object != "list" {
		t.Fatalf("GET /models: %v: %s", err, r.body)
	}
	out := map[string]llamaEntry{}
	var ids []string
	for _, e := range list.Data {
		out[e.ID] = e
		ids = append(ids, e.ID)
	}
	return out, ids
}

// llamaValue is the status value GET /models gives model, and hotswap's
// state beside it.
func (s *stack) llamaValue(t *testing.T, model string) (string, string) {
	t.Helper()
	list, _ := s.llamaList(t)
	e, ok := list[model]
	if !ok {
		t.Fatalf("GET /models has no %q", model)
	}
	return e.Status.Value, e.State
}

// userChat sends a chat for model with the user's key and reads its answer
// to the end: a stream's last event, or a crash's cut.
func (s *stack) userChat(model string, stream bool) error {
	body, _ := json.Marshal(map[string]any{"model": model, "stream": stream,
		"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	req, err := http.NewRequest("POST", s.url+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(userKey, asUser)
	req.Header.Set("Content-Type", jsonType)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// llamaPost posts body to path (/models/load or /models/unload) as the
// admin.
func (s *stack) llamaPost(path, body string) response {
	s.t.Helper()
	return s.do("POST", path, jsonType, []byte(body), userKey, asAdmin)
}

// TestLlamaModelsList: GET /models lists every listed model in config
// order, each followed by its listed variants, in llama.cpp's shape, with
// each one's status: unloaded, loading while it starts, loaded, loaded
// while it drains, unloaded again; a variant's status is its model's.
func TestLlamaModelsList(t *testing.T) {
	s := newLlamaStack(t)
	list, ids := s.llamaList(t)
	want := []string{"slow", "slow-v", "quick", "streamer", "broken", "crashy"}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("ids %v, want %v (unlisted ones left out)", ids, want)
	}
	slow := list["slow"]
	if slow.Object != "model" || slow.OwnedBy != "hotswap" || slow.Created == 0 || slow.Source != "preset" ||
		slow.CanRemove == nil || *slow.CanRemove || slow.Tags == nil || len(slow.Aliases) != 1 || slow.Aliases[0] != "slow-alias" {
		t.Errorf("slow: %+v", slow)
	}
	if in := slow.Architecture.InputModalities; strings.Join(in, ",") != "text,image" ||
		strings.Join(slow.Architecture.OutputModalities, ",") != "text" {
		t.Errorf("slow's architecture %+v, want text and image in, text out", slow.Architecture)
	}
	if in := list["quick"].Architecture.InputModalities; strings.Join(in, ",") != "text" {
		t.Errorf("quick's input modalities %v, want text", in)
	}
	if v := list["slow-v"]; v.VariantOf != "slow" || len(v.Aliases) != 1 || v.Aliases[0] != "slow-v-alias" {
		t.Errorf("slow-v: %+v", v)
	}
	for _, id := range want {
		if e := list[id]; e.Status.Value != "unloaded" || e.State != "stopped" || e.Status.Failed || e.Status.ExitCode != nil {
			t.Errorf("%s before any load: %+v", id, e.Status)
		}
	}

	// Loading, then loaded: the variant follows its model.
	if r := s.llamaPost("/models/load?wait=false", `{"model":"slow"}`); r.status != 200 || string(r.body) != `{"success":true}` {
		t.Fatalf("load ?wait=false: %d %s", r.status, r.body)
	}
	loading := func(model string) bool { v, _ := s.llamaValue(t, model); return v == "loading" }
	if !mocktest.Eventually(5*time.Second, func() bool { return loading("slow") && loading("slow-v") }) {
		t.Fatalf("slow never listed as loading: %v", s.status("slow").State)
	}
	if !mocktest.Eventually(10*time.Second, func() bool {
		v, st := s.llamaValue(t, "slow-v")
		return v == "loaded" && st == "ready"
	}) {
		t.Fatalf("slow-v never listed as loaded")
	}

	// Draining (a stream in flight while it is unloaded) is still loaded:
	// its process runs until its last answer is out.
	streamDone := make(chan error, 1)
	go func() { streamDone <- s.userChat("streamer", true) }()
	if !mocktest.Eventually(10*time.Second, func() bool { return s.status("streamer").InFlight == 1 }) {
		t.Fatal("the stream never reached streamer")
	}
	if r := s.llamaPost("/models/unload?wait=false", `{"model":"streamer"}`); r.status != 200 {
		t.Fatalf("unload ?wait=false: %d %s", r.status, r.body)
	}
	// ?wait=false answers before the unload begins, so the drain shows a
	// moment later; the stream (3 s) outlasts the wait.
	if !mocktest.Eventually(2*time.Second, func() bool {
		v, st := s.llamaValue(t, "streamer")
		return v == "loaded" && st == "draining"
	}) {
		v, st := s.llamaValue(t, "streamer")
		t.Errorf("streamer while draining: %s (%s), want loaded (draining)", v, st)
	}
	if err := <-streamDone; err != nil {
		t.Fatalf("stream: %v", err)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { v, _ := s.llamaValue(t, "streamer"); return v == "unloaded" }) {
		t.Fatalf("streamer never unloaded after its stream")
	}

	// A failed start: unloaded, failed, with an exit code and why.
	if r := s.llamaPost("/models/load", `{"model":"broken"}`); r.status != 503 {
		t.Fatalf("load broken: %d %s", r.status, r.body)
	}
	list, _ = s.llamaList(t)
	b := list["broken"]
	if b.Status.Value != "unloaded" || !b.Status.Failed || b.Status.ExitCode == nil || *b.Status.ExitCode == 0 ||
		!strings.Contains(b.Status.Message, "broken on purpose") || b.State != "failed" {
		t.Errorf("broken after its failed start: %+v (%s)", b.Status, b.State)
	}
}

// TestLlamaModelsLoadUnload: load answers {"success":true} once the model
// is loaded, unload once it has stopped; by alias and variant too; what
// llama.cpp refuses (already running, not running) is refused, with the
// status codes and error bodies of OpenAI's (and llama-server's) shape.
func TestLlamaModelsLoadUnload(t *testing.T) {
	s := newLlamaStack(t)
	r := s.llamaPost("/models/load", `{"model":"quick","extra_args":["--ctx-size","4096"]}`)
	if r.status != 200 || string(r.body) != `{"success":true}` || !strings.HasPrefix(r.header.Get("Content-Type"), jsonType) {
		t.Fatalf("load: %d %s", r.status, r.body)
	}
	if st := s.status("quick").State; st != swapper.Ready {
		t.Fatalf("quick is %v once load has answered, want ready", st)
	}
	for _, name := range []string{"quick"} {
		r := s.llamaPost("/models/load", `{"model":"`+name+`"}`)
		if _, _, code := r.apiError(t); r.status != 400 || code != "already_running" {
			t.Errorf("load %s again: %d %s", name, r.status, r.body)
		}
	}
	r = s.llamaPost("/models/unload", `{"model":"quick"}`)
	if r.status != 200 || string(r.body) != `{"success":true}` {
		t.Fatalf("unload: %d %s", r.status, r.body)
	}
	if st := s.status("quick").State; st != swapper.Stopped {
		t.Fatalf("quick is %v once unload has answered, want stopped", st)
	}
	r = s.llamaPost("/models/unload", `{"model":"quick"}`)
	if _, _, code := r.apiError(t); r.status != 400 || code != "not_running" {
		t.Errorf("unload quick again: %d %s", r.status, r.body)
	}

	// Aliases, variants and unlisted names load their model.
	for _, c := range []struct{ name, model string }{
		{"slow-alias", "slow"}, {"slow-v-alias", "slow"}, {"slow-hidden", "slow"}, {"secret", "secret"},
	} {
		if r := s.llamaPost("/models/load", `{"model":"`+c.name+`"}`); r.status != 200 {
			t.Fatalf("load %s: %d %s", c.name, r.status, r.body)
		}
		if st := s.status(c.model).State; st != swapper.Ready {
			t.Errorf("load %s: %s is %v", c.name, c.model, st)
		}
		if r := s.llamaPost("/models/load", `{"model":"slow-v"}`); c.model == "slow" && r.status != 400 {
			t.Errorf("load slow-v with slow loaded: %d %s", r.status, r.body)
		}
		if r := s.llamaPost("/models/unload", `{"model":"`+c.name+`"}`); r.status != 200 {
			t.Fatalf("unload %s: %d %s", c.name, r.status, r.body)
		}
		if st := s.status(c.model).State; st != swapper.Stopped {
			t.Errorf("unload %s: %s is %v", c.name, c.model, st)
		}
	}

	// What is refused, and how.
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/models/load", `{"model":"nope"}`, 404, "model_not_found"},
		{"POST", "/models/unload", `{"model":"nope"}`, 404, "model_not_found"},
		{"POST", "/models/load", ``, 400, "invalid_request"},
		{"POST", "/models/load", `{"model":`, 400, "invalid_json"},
		{"POST", "/models/load", `{"model":5}`, 400, "invalid_json"},
		{"POST", "/models/load", `{"model":""}`, 400, "missing_model"},
		{"POST", "/models/unload", `{}`, 400, "missing_model"},
		{"POST", "/models/load", `{"model":"broken"}`, 503, "backend_start_failed"},
		{"GET", "/models/load", ``, 405, "method_not_allowed"}, // as a user: a GET needs an api key
		{"PUT", "/models/sse", ``, 405, "method_not_allowed"},
		{"HEAD", "/models/sse", ``, 405, ""},
		{"POST", "/models", `{"model":"org/repo:Q4_K_M"}`, 501, "not_supported"},
		{"DELETE", "/models?model=quick", ``, 501, "not_supported"},
		{"POST", "/models/nope", `{}`, 404, "not_found"},
	} {
		key := asAdmin
		if c.method == "GET" || c.method == "HEAD" {
			key = asUser
		}
		r := s.do(c.method, c.path, jsonType, []byte(c.body), userKey, key)
		if c.method == "HEAD" { // no body to read the error from
			if r.status != c.status {
				t.Errorf("HEAD %s: %d, want %d", c.path, r.status, c.status)
			}
			continue
		}
		msg, typ, code := r.apiError(t)
		if r.status != c.status || code != c.code || msg == "" || typ == "" {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, r.status, r.body, c.status, c.code)
		}
	}
}

// TestLlamaModelsKeys: GET /models and its events need an api key; load
// and unload are operators' commands, and need an admin key.
func TestLlamaModelsKeys(t *testing.T) {
	s := newLlamaStack(t)
	for _, c := range []struct {
		method, path, key string
		status            int
	}{
		{"GET", "/models", "", 401},
		{"GET", "/models", asUser, 200},
		{"POST", "/models/load", "", 401},
		{"POST", "/models/load", asUser, 401},
		{"POST", "/models/unload", asUser, 401},
		{"POST", "/models/load", asAdmin, 200},
		{"POST", "/models/unload", asAdmin, 200},
	} {
		var h []string
		if c.key != "" {
			h = []string{userKey, c.key}
		}
		r := s.do(c.method, c.path, jsonType, []byte(`{"model":"quick"}`), h...)
		if r.status != c.status {
			t.Errorf("%s %s with %q: %d %s, want %d", c.method, c.path, c.key, r.status, r.body, c.status)
		}
	}
	resp, err := http.Get(s.url + "/models/sse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("GET /models/sse without a key: %d", resp.StatusCode)
	}
	if st := s.status("quick").State; st != swapper.Stopped {
		t.Errorf("quick is %v after a refused load and an unload", st)
	}
}

// llamaRecord is one record of GET /models/sse.
type llamaRecord struct {
	Model string `json:"model"`
	Event string `json:"event"`
	Data  *struct {
		Status   string `json:"status"`
		ExitCode *int   `json:"exit_code"`
		Message  string `json:"message"`
	} `json:"data"`
}

func (r llamaRecord) String() string {
	if r.Data == nil {
		return r.Event
	}
	s := r.Event + " " + r.Data.Status
	if r.Data.ExitCode != nil {
		s += " " + string(rune('0'+*r.Data.ExitCode))
	}
	return s
}

// llamaFeed is GET /models/sse as read so far: its records, and any line
// that is neither a data line, a comment nor a record's end (llama.cpp's
// records are one data line each, without event names or ids).
type llamaFeed struct {
	mu      sync.Mutex
	records []llamaRecord
	odd     []string
	read    map[string]int // by model: how many of its records until has returned
}

// llamaStream opens GET /models/sse and reads it until the test ends.
func (s *stack) llamaStream(t *testing.T) *llamaFeed {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+"/models/sse", nil)
	req.Header.Set(userKey, asUser)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("GET /models/sse: %d %v", resp.StatusCode, resp.Header)
	}
	f := &llamaFeed{read: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			var r llamaRecord
			data, ok := strings.CutPrefix(line, "data: ")
			f.mu.Lock()
			switch {
			case ok && json.Unmarshal([]byte(data), &r) == nil:
				f.records = append(f.records, r)
			case line != "" && !strings.HasPrefix(line, ":"):
				f.odd = append(f.odd, line)
			}
			f.mu.Unlock()
		}
	}()
	t.Cleanup(func() { resp.Body.Close(); <-done })
	return f
}

// until waits for a record for model that satisfies last, and returns the
// records for model since the last call, up to that one.
func (f *llamaFeed) until(t *testing.T, model string, last func(llamaRecord) bool) []llamaRecord {
	t.Helper()
	var got []llamaRecord
	ok := mocktest.Eventually(15*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		got = got[:0]
		seen := 0
		for _, r := range f.records {
			if r.Model != model {
				continue
			}
			seen++
			if seen <= f.read[model] {
				continue
			}
			got = append(got, r)
			if last(r) {
				f.read[model] = seen
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("%s: records so far %s", model, sequence(got))
	}
	return got
}

func unloaded(r llamaRecord) bool { return r.Data != nil && r.Data.Status == "unloaded" }

func sequence(rs []llamaRecord) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.String())
	}
	return strings.Join(parts, ", ")
}

// TestLlamaModelsEvents: /models/sse says, in order and in llama.cpp's
// records, what a load and an unload do (for the model and its variants),
// a failed start, a crash and a load called off by an unload.
func TestLlamaModelsEvents(t *testing.T) {
	s := newLlamaStack(t)
	feed := s.llamaStream(t)
	// Twice: the second load is of a model that was loaded before.
	for range 2 {
		if r := s.llamaPost("/models/load", `{"model":"slow"}`); r.status != 200 {
			t.Fatalf("load: %d %s", r.status, r.body)
		}
		if r := s.llamaPost("/models/unload", `{"model":"slow-v"}`); r.status != 200 {
			t.Fatalf("unload: %d %s", r.status, r.body)
		}
		const want = "model_status loading, status_change loaded, status_change unloaded 0"
		if got := sequence(feed.until(t, "slow", unloaded)); got != want {
			t.Errorf("slow: %s, want %s", got, want)
		}
		if got := sequence(feed.until(t, "slow-v", unloaded)); got != want {
			t.Errorf("slow-v (a variant): %s, want %s", got, want)
		}
	}

	// A failed start: unloaded with a non-zero exit code and why.
	if r := s.llamaPost("/models/load", `{"model":"broken"}`); r.status != 503 {
		t.Fatalf("load broken: %d %s", r.status, r.body)
	}
	got := feed.until(t, "broken", unloaded)
	if sequence(got) != "model_status loading, status_change unloaded 1" ||
		!strings.Contains(got[len(got)-1].Data.Message, "broken on purpose") {
		t.Errorf("broken: %s (%+v)", sequence(got), *got[len(got)-1].Data)
	}

	// A crash (the mock exits with status 3 on its first chat).
	if r := s.llamaPost("/models/load", `{"model":"crashy"}`); r.status != 200 {
		t.Fatalf("load crashy: %d %s", r.status, r.body)
	}
	if err := s.userChat("crashy", false); err != nil {
		t.Fatal(err)
	}
	if got := sequence(feed.until(t, "crashy", unloaded)); got != "model_status loading, status_change loaded, status_change unloaded 3" {
		t.Errorf("crashy: %s", got)
	}

	// A load called off by an unload: hotswap has no event for it; the
	// stream says unloaded all the same. The load's client hangs up
	// first (the load goes on), so that no load waits to start it again.
	hangup, cancel := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		req, _ := http.NewRequestWithContext(hangup, "POST", s.url+"/models/load", strings.NewReader(`{"model":"slow"}`))
		req.Header.Set(userKey, asAdmin)
		if resp, err := s.client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	feed.until(t, "slow", func(r llamaRecord) bool { return r.Data != nil && r.Data.Status == "loading" })
	cancel()
	<-loadDone
	if !mocktest.Eventually(5*time.Second, func() bool { return s.rt.Stats("slow").Queued.Load() == 0 }) {
		t.Fatal("the load that was hung up on stays queued")
	}
	if st := s.status("slow").State; st != swapper.Starting {
		t.Fatalf("slow is %v, want starting (the mock takes 400ms)", st)
	}
	if r := s.llamaPost("/models/unload", `{"model":"slow"}`); r.status != 200 {
		t.Fatalf("unload while loading: %d %s", r.status, r.body)
	}
	if got := sequence(feed.until(t, "slow", unloaded)); got != "status_change unloaded 0" {
		t.Errorf("slow, unloaded while loading: %s", got)
	}

	feed.mu.Lock()
	defer feed.mu.Unlock()
	if len(feed.odd) > 0 {
		t.Errorf("lines that are not llama.cpp's records: %q", feed.odd)
	}
}

// TestLlamaRouterPropsAndStatus: llama.cpp's web UI turns on its model
// selector when GET /props (no ?model=) says role "router", and reads each
// model's status from /v1/models, as Open WebUI does.
func TestLlamaRouterPropsAndStatus(t *testing.T) {
	s := newLlamaStack(t)
	r := s.do("GET", "/props", "", nil, userKey, asUser)
	var props struct {
		Role string `json:"role"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &props) != nil || props.Role != "router" {
		t.Errorf("GET /props: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/props", "", nil); r.status != 401 {
		t.Errorf("GET /props without a key: %d", r.status)
	}
	status := func() map[string]string {
		t.Helper()
		var list struct {
			Data []struct {
				ID     string `json:"id"`
				Status struct {
					Value string `json:"value"`
				} `json:"status"`
			} `json:"data"`
		}
		r := s.do("GET", "/v1/models", "", nil, userKey, asUser)
		if err := json.Unmarshal(r.body, &list); err != nil {
			t.Fatalf("/v1/models: %v %s", err, r.body)
		}
		out := map[string]string{}
		for _, m := range list.Data {
			out[m.ID] = m.Status.Value
		}
		return out
	}
	if st := status(); st["quick"] != "unloaded" || st["slow-v"] != "unloaded" {
		t.Errorf("before a load: %v", st)
	}
	if r := s.do("POST", "/models/load", jsonType, []byte(`{"model":"quick"}`), userKey, asAdmin); r.status != 200 {
		t.Fatalf("load: %d %s", r.status, r.body)
	}
	if st := status(); st["quick"] != "loaded" || st["slow"] != "unloaded" {
		t.Errorf("after loading quick: %v", st)
	}
}

// TestLlamaWebUIProbes: what llama.cpp's web UI asks on every load, and
// how llama-server answers without the features behind them: /tools and
// /cors-proxy are disabled, and no stream is there to resume.
func TestLlamaWebUIProbes(t *testing.T) {
	s := newLlamaStack(t)
	for _, path := range []string{"/tools", "/cors-proxy"} {
		r := s.do("GET", path, "", nil, userKey, asUser)
		if msg, typ, _ := r.apiError(t); r.status != 403 || msg != "this feature is disabled" || typ != "feature_disabled" {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	r := s.do("POST", "/v1/streams/lookup", jsonType, []byte(`{"conversation_ids":["c1::quick"]}`), userKey, asUser)
	if r.status != 200 || string(r.body) != "[]" {
		t.Errorf("POST /v1/streams/lookup: %d %s", r.status, r.body)
	}
	if r := s.do("POST", "/v1/streams/lookup", jsonType, []byte(`{}`)); r.status != 401 {
		t.Errorf("POST /v1/streams/lookup without a key: %d", r.status)
	}
}
