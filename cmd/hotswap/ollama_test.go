package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// Ollama's API through the hotswap binary and the mock: each endpoint,
// streamed and not, in Ollama's exact shapes; keep_alive; refusals in
// Ollama's error shape; and the official ollama npm client.

const ollamaConfig = `
ports: 22000-22999
models:
  qwen:
    cmd: MOCK -port ${PORT} -model ${MODEL} -served-model-name qwen3-8b -keep-bodies 8 -tokens 3 -stream-interval 1ms -progress-interval 0
    upstream_model: qwen3-8b
    aliases: [qwen-alias]
    params: {set: {top_k: 20}}
    capabilities: [text, tools]
    metadata: {family: qwen3, parameter_size: 8B, quantization_level: Q4_K_M, context_length: 32768}
    variants:
      qwen-fast: {params: {set: {temperature: 0}}}
  embed:
    cmd: MOCK -port ${PORT} -model ${MODEL} -dim 4 -progress-interval 0
    kind: embedding
    capabilities: [embeddings]
  hidden:
    cmd: MOCK -port ${PORT} -model ${MODEL} -progress-interval 0
    unlisted: true
`

// ndjson reads an NDJSON answer: one JSON object per line, each decoded.
func ndjson(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			t.Errorf("an empty line in NDJSON: %q", body)
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, v)
	}
	return lines
}

func TestOllamaChatAndGenerate(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, ollamaConfig))
	c := client{t, url, ""}

	// Streamed (Ollama's default): NDJSON, one line per token, then the
	// final line with the counts and durations.
	code, body, h := c.do("POST", "/api/chat", `{"model":"qwen-alias","messages":[{"role":"user","content":"hi"}],"options":{"temperature":0.2,"num_predict":5,"num_ctx":4096}}`)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/x-ndjson") {
		t.Fatalf("/api/chat: %d %s %s", code, h.Get("Content-Type"), body)
	}
	lines := ndjson(t, body)
	if len(lines) < 2 {
		t.Fatalf("/api/chat streamed %d lines: %s", len(lines), body)
	}
	var text string
	for i, l := range lines[:len(lines)-1] {
		msg, _ := l["message"].(map[string]any)
		if l["model"] != "qwen-alias" || l["done"] != false || msg["role"] != "assistant" || l["created_at"] == nil {
			t.Errorf("line %d: %v", i, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, l["created_at"].(string)); err != nil {
			t.Errorf("line %d: created_at %v", i, l["created_at"])
		}
		s, _ := msg["content"].(string)
		text += s
	}
	if !strings.HasPrefix(text, "tok0 tok1 tok2") {
		t.Errorf("the streamed text: %q", text)
	}
	last := lines[len(lines)-1]
	if last["done"] != true || last["done_reason"] != "stop" || last["model"] != "qwen-alias" {
		t.Errorf("the final line: %v", last)
	}
	for _, k := range []string{"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"} {
		if n, ok := last[k].(float64); !ok || n < 0 {
			t.Errorf("the final line's %s: %v (%v)", k, last[k], last)
		}
	}
	if last["eval_count"] != 3.0 {
		t.Errorf("eval_count %v, want the backend's 3 completion tokens", last["eval_count"])
	}
	// What the backend got: OpenAI's request, its options mapped (and
	// num_ctx left out), the model's params and upstream_model applied.
	sent := receivedJSON(c, "qwen")
	if sent["model"] != "qwen3-8b" || sent["temperature"] != 0.2 || sent["max_tokens"] != 5.0 || sent["top_k"] != 20.0 ||
		sent["stream"] != true || sent["num_ctx"] != nil {
		t.Errorf("the backend was sent %v", sent)
	}
	if path, _, _ := received(c, "qwen"); path != "/v1/chat/completions" {
		t.Errorf("the backend was sent %s", path)
	}

	// Not streamed: one object, the same fields.
	var whole map[string]any
	c.json("POST", "/api/chat", `{"model":"qwen","stream":false,"messages":[{"role":"user","content":"hi"}]}`, 200, &whole)
	msg, _ := whole["message"].(map[string]any)
	if whole["done"] != true || whole["model"] != "qwen" || msg["role"] != "assistant" ||
		!strings.HasPrefix(msg["content"].(string), "tok0 tok1 tok2") || whole["eval_count"] != 3.0 {
		t.Errorf("/api/chat, not streamed: %v", whole)
	}

	// generate: response, not message; a variant's params apply.
	code, body, _ = c.do("POST", "/api/generate", `{"model":"qwen-fast","prompt":"hi","system":"be brief"}`)
	lines = ndjson(t, body)
	if code != 200 || len(lines) < 2 {
		t.Fatalf("/api/generate: %d %s", code, body)
	}
	text = ""
	for _, l := range lines {
		if l["model"] != "qwen-fast" || l["message"] != nil {
			t.Errorf("/api/generate line %v", l)
		}
		s, _ := l["response"].(string)
		text += s
	}
	if !strings.HasPrefix(text, "tok0 tok1 tok2") || lines[len(lines)-1]["done"] != true {
		t.Errorf("/api/generate: %q, last %v", text, lines[len(lines)-1])
	}
	if sent := receivedJSON(c, "qwen"); sent["temperature"] != 0.0 {
		t.Errorf("the variant's params: the backend was sent %v", sent)
	}
	c.json("POST", "/api/generate", `{"model":"qwen","prompt":"hi","stream":false}`, 200, &whole)
	if whole["done"] != true || !strings.HasPrefix(whole["response"].(string), "tok0") {
		t.Errorf("/api/generate, not streamed: %v", whole)
	}
}

func TestOllamaEmbedAndListings(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, ollamaConfig))
	c := client{t, url, ""}

	var emb struct {
		Model      string      `json:"model"`
		Embeddings [][]float64 `json:"embeddings"`
		Total      int64       `json:"total_duration"`
	}
	c.json("POST", "/api/embed", `{"model":"embed","input":["a","b","c"]}`, 200, &emb)
	if emb.Model != "embed" || len(emb.Embeddings) != 3 || len(emb.Embeddings[0]) != 4 || emb.Total <= 0 {
		t.Errorf("/api/embed: %+v", emb)
	}
	var old struct {
		Embedding []float64 `json:"embedding"`
	}
	c.json("POST", "/api/embeddings", `{"model":"embed","prompt":"a"}`, 200, &old)
	if len(old.Embedding) != 4 {
		t.Errorf("/api/embeddings: %+v", old)
	}

	var version struct{ Version string }
	c.json("GET", "/api/version", "", 200, &version)
	if version.Version == "" {
		t.Error("no version")
	}

	type entry struct {
		Name      string `json:"name"`
		Model     string `json:"model"`
		Size      int64  `json:"size"`
		SizeVRAM  *int64 `json:"size_vram"`
		Digest    string `json:"digest"`
		ExpiresAt string `json:"expires_at"`
		Details   struct {
			Family            string `json:"family"`
			ParameterSize     string `json:"parameter_size"`
			QuantizationLevel string `json:"quantization_level"`
		} `json:"details"`
	}
	var tags struct{ Models []entry }
	c.json("GET", "/api/tags", "", 200, &tags)
	var names []string
	for _, m := range tags.Models {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"qwen", "qwen-alias", "qwen-fast", "embed"}) {
		t.Errorf("/api/tags lists %v", names)
	}
	q := tags.Models[0]
	if q.Details.Family != "qwen3" || q.Details.ParameterSize != "8B" || q.Details.QuantizationLevel != "Q4_K_M" || len(q.Digest) != 64 {
		t.Errorf("qwen in /api/tags: %+v", q)
	}

	// ps: the loaded ones (embed, from the requests above), with sizes
	// from what was measured, and when they expire.
	var ps struct{ Models []entry }
	c.json("GET", "/api/ps", "", 200, &ps)
	if len(ps.Models) != 1 || ps.Models[0].Name != "embed" || ps.Models[0].Size <= 0 || ps.Models[0].SizeVRAM == nil {
		t.Errorf("/api/ps: %+v", ps.Models)
	}

	var show map[string]any
	c.json("POST", "/api/show", `{"model":"qwen-fast"}`, 200, &show)
	caps, _ := show["capabilities"].([]any)
	if !slices.Contains(caps, any("completion")) || !slices.Contains(caps, any("tools")) || show["details"] == nil {
		t.Errorf("/api/show: %v", show)
	}
	c.json("POST", "/api/show", `{"model":"hidden"}`, 200, &show)
}

// TestOllamaKeepAlive: keep_alive 0 sends the model away once its answer
// is given; -1 keeps it past its ttl, which a witness with the same ttl
// shows has passed.
func TestOllamaKeepAlive(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, `
ports: 22000-22999
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -tokens 2 -stream-interval 1ms -progress-interval 0", ttl: 300ms}
  witness: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0", ttl: 300ms}
`))
	c := client{t, url, ""}
	running := func(model string) bool { _, ok := c.loaded()[model]; return ok }

	c.json("POST", "/api/chat", `{"model":"a","stream":false,"keep_alive":0,"messages":[{"role":"user","content":"hi"}]}`, 200, nil)
	if !mocktest.Eventually(10*time.Second, func() bool { return !running("a") }) {
		t.Fatal("keep_alive 0: a is still loaded")
	}

	code, _, _ := c.do("POST", "/api/generate", `{"model":"a","prompt":"hi","keep_alive":-1}`)
	if code != 200 {
		t.Fatalf("generate: %d", code)
	}
	c.json("POST", "/api/chat", `{"model":"witness","stream":false,"messages":[{"role":"user","content":"hi"}]}`, 200, nil)
	if !mocktest.Eventually(10*time.Second, func() bool { return !running("witness") }) {
		t.Fatal("the witness outlived its ttl")
	}
	if !running("a") {
		t.Fatal("keep_alive -1: a left with its ttl")
	}
	var ps struct {
		Models []struct {
			Name      string `json:"name"`
			ExpiresAt string `json:"expires_at"`
		}
	}
	c.json("GET", "/api/ps", "", 200, &ps)
	if len(ps.Models) != 1 || ps.Models[0].Name != "a" {
		t.Fatalf("/api/ps: %+v", ps)
	}
	if at, err := time.Parse(time.RFC3339Nano, ps.Models[0].ExpiresAt); err != nil || time.Until(at) < 24*time.Hour {
		t.Errorf("keep_alive -1 expires at %q", ps.Models[0].ExpiresAt)
	}

	// Ollama's unload: an empty request with keep_alive 0.
	var done map[string]any
	c.json("POST", "/api/generate", `{"model":"a","keep_alive":0}`, 200, &done)
	if done["done"] != true || done["done_reason"] != "unload" {
		t.Errorf("the unload's answer: %v", done)
	}
	if running("a") {
		t.Error("an empty request with keep_alive 0 left a loaded")
	}
	// And its load: an empty request.
	c.json("POST", "/api/chat", `{"model":"a","messages":[]}`, 200, &done)
	if done["done"] != true || done["done_reason"] != "load" || !running("a") {
		t.Errorf("the load's answer: %v, loaded %v", done, running("a"))
	}
}

// TestOllamaRefusals: every refusal on /api/ is Ollama's {"error": "..."}.
func TestOllamaRefusals(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, "api_keys: [sk-ollama-test]\n"+ollamaConfig))
	for _, c := range []struct {
		method, path, body, key string
		status                  int
		says                    string
	}{
		{"GET", "/api/tags", "", "", 401, "API key"},
		{"POST", "/api/chat", `{"model":"qwen","messages":[]}`, "wrong", 401, "API key"},
		{"POST", "/api/chat", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, "sk-ollama-test", 404, "nope"},
		{"POST", "/api/chat", `{"model":`, "sk-ollama-test", 400, ""},
		{"POST", "/api/chat", `{"messages":[]}`, "sk-ollama-test", 400, "model"},
		{"POST", "/api/generate", `{"model":"qwen","prompt":"x","keep_alive":"soon"}`, "sk-ollama-test", 400, "keep_alive"},
		{"GET", "/api/chat", "", "sk-ollama-test", 405, "POST"},
		{"POST", "/api/pull", `{"model":"llama3.2"}`, "sk-ollama-test", 501, "model files"},
		{"DELETE", "/api/delete", `{"model":"qwen"}`, "sk-ollama-test", 501, "model files"},
		{"POST", "/api/nothing", `{}`, "sk-ollama-test", 404, "unknown path"},
		{"POST", "/api/show", `{"model":"nope"}`, "sk-ollama-test", 404, "nope"},
	} {
		code, body, h := (client{t, url, c.key}).do(c.method, c.path, c.body)
		var e map[string]any
		if err := json.Unmarshal(body, &e); err != nil || code != c.status || len(e) != 1 ||
			!strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %q, want %d and {\"error\": ...}", c.method, c.path, code, body, c.status)
			continue
		}
		if msg, _ := e["error"].(string); msg == "" || !strings.Contains(msg, c.says) || strings.Contains(msg, "sk-ollama-test") {
			t.Errorf("%s %s: error %q, want it to say %q", c.method, c.path, msg, c.says)
		}
	}
}

// TestOllamaClient: the official ollama npm client, as its users call it.
func TestOllamaClient(t *testing.T) {
	dir := sdkDir(t)
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, "api_keys: [sk-ollama-js]\n"+ollamaConfig))
	type result struct {
		Check, Model, Text, Reason, Error string
		OK, Done                          bool
		Status, Parts, Count, Dim         int
		EvalCount, PromptEvalCount        int
		Names                             []string
	}
	seen := map[string]result{}
	for _, r := range node[result](t, dir, "ollama.mjs", url, "sk-ollama-js", "qwen", "embed") {
		seen[r.Check] = r
	}
	want := func(check string, ok bool) result {
		t.Helper()
		r, found := seen[check]
		if !found || r.OK != ok {
			t.Errorf("%s: %+v", check, r)
		}
		return r
	}
	if r := want("version", true); r.Text == "" {
		t.Errorf("version: %+v", r)
	}
	if r := want("list", true); !slices.Contains(r.Names, "qwen") || slices.Contains(r.Names, "hidden") {
		t.Errorf("list: %+v", r)
	}
	for _, check := range []string{"chat", "chat-stream", "generate", "generate-stream"} {
		if r := want(check, true); r.Model != "qwen" || !strings.HasPrefix(r.Text, "tok0 tok1 tok2") || !r.Done {
			t.Errorf("%s: %+v", check, r)
		}
	}
	if r := seen["chat-stream"]; r.Parts < 3 || r.Reason != "stop" || r.EvalCount != 3 || r.PromptEvalCount <= 0 {
		t.Errorf("chat-stream: %+v", r)
	}
	if r := want("embed", true); r.Count != 2 || r.Dim != 4 {
		t.Errorf("embed: %+v", r)
	}
	if r := want("embeddings", true); r.Dim != 4 {
		t.Errorf("embeddings: %+v", r)
	}
	if r := want("ps", true); !slices.Contains(r.Names, "qwen") || !slices.Contains(r.Names, "embed") {
		t.Errorf("ps: %+v", r)
	}
	if r := want("show", true); r.Text != "qwen3" || !slices.Contains(r.Names, "tools") {
		t.Errorf("show: %+v", r)
	}
	if r := want("unknown-model", false); r.Status != 404 || !strings.Contains(r.Error, "no-such-model") {
		t.Errorf("unknown-model: %+v", r)
	}
	if r := want("pull", false); r.Status != 501 || !strings.Contains(r.Error, "model files") {
		t.Errorf("pull: %+v", r)
	}
	if r := want("unload", true); slices.Contains(r.Names, "qwen") {
		t.Errorf("unload: qwen still loaded: %+v", r)
	}
}

// TestOllamaCORS: a page of an origin in cors_origins may call Ollama's
// API (its preflight answered without a key, as browsers send none); a
// page of another origin may not.
func TestOllamaCORS(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, "api_keys: [sk-cors]\ncors_origins: [http://app.example]\n"+ollamaConfig))
	c := client{t, url, "sk-cors"}
	code, _, h := (client{t, url, ""}).do("OPTIONS", "/api/chat", "", "Origin", "http://app.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
	if code != 204 || h.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Errorf("preflight: %d %v", code, h)
	}
	code, _, h = c.do("GET", "/api/tags", "", "Origin", "http://app.example")
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Errorf("GET /api/tags from the allowed origin: %d %v", code, h)
	}
	code, body, _ := c.do("GET", "/api/tags", "", "Origin", "http://evil.example")
	if code != 403 || !strings.Contains(string(body), `"error"`) {
		t.Errorf("GET /api/tags from another origin: %d %s", code, body)
	}
}

// TestOllamaLoadProgress: with load_progress on, an Ollama stream that
// waits for its model's load says so in thinking lines, then answers; with
// it off, or not streamed, nothing is added.
func TestOllamaLoadProgress(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, `
ports: 22000-22999
models:
  slow:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 1500ms -tokens 3 -stream-interval 1ms -progress-interval 0
    load_progress: reasoning
  quiet:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 300ms -tokens 3 -stream-interval 1ms -progress-interval 0
`))
	c := client{t, url, ""}
	for _, path := range []string{"/api/chat", "/api/generate"} {
		c.json("POST", "/admin/models/slow/unload", "", 200, nil)
		code, body, _ := c.do("POST", path, `{"model":"slow","prompt":"hi","messages":[{"role":"user","content":"hi"}]}`)
		lines := ndjson(t, body)
		if code != 200 || len(lines) < 3 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var thinking, text string
		answered := false
		for i, l := range lines {
			th, s := l["thinking"], l["response"]
			if msg, ok := l["message"].(map[string]any); ok {
				th, s = msg["thinking"], msg["content"]
			}
			if th, _ := th.(string); th != "" {
				if answered {
					t.Errorf("%s: progress after the answer began, line %d: %v", path, i, l)
				}
				thinking += th
			}
			if s, _ := s.(string); s != "" {
				answered = true
				text += s
			}
			if l["model"] != "slow" || (l["done"] == true) != (i == len(lines)-1) {
				t.Errorf("%s: line %d: %v", path, i, l)
			}
		}
		if !strings.Contains(thinking, "slow") || !strings.Contains(thinking, "ready") {
			t.Errorf("%s: the progress said %q", path, thinking)
		}
		if !strings.HasPrefix(text, "tok0 tok1 tok2") {
			t.Errorf("%s: the answer %q", path, text)
		}
	}

	// Off: only the answer.
	_, body, _ := c.do("POST", "/api/chat", `{"model":"quiet","messages":[{"role":"user","content":"hi"}]}`)
	for _, l := range ndjson(t, body) {
		if msg, _ := l["message"].(map[string]any); msg["thinking"] != nil {
			t.Errorf("a model without load_progress got %v", l)
		}
	}
}
