package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Issue 28's proxy half, through the hotswap binary and the mock: request
// shaping (set, default, strip, nested keys), upstream_model seen by the
// backend while the client sees its own name, variants on one backend,
// and what /v1/models says.

// shapeConfig has a model with every kind of rule and upstream_model, its
// backend a mock that checks the model name as vLLM does
// (-served-model-name), and keeps the bodies it receives.
const shapeConfig = `
ports: 22000-22999
models:
  qwen:
    cmd: MOCK -port ${PORT} -model ${MODEL} -served-model-name qwen3-8b -keep-bodies 16 -tokens 3 -stream-interval 1ms -progress-interval 0
    upstream_model: qwen3-8b
    aliases: [gpt-4o-mini]
    params:
      set: {temperature: 0.6, chat_template_kwargs.enable_thinking: true}
      default: {top_p: 0.95}
      strip: [logit_bias, chat_template_kwargs.foo]
    name: Qwen3 8B
    description: A small model that thinks first.
    capabilities: [text, tools]
    metadata: {family: qwen3, context: 32768}
    variants:
      qwen-fast:
        aliases: [fast]
        params: {set: {chat_template_kwargs.enable_thinking: false}}
        name: Qwen3 8B, fast
      qwen-hidden:
        unlisted: true
        params: {default: {top_p: 0.5}}
  shaped:
    cmd: MOCK -port ${PORT} -model ${MODEL} -keep-bodies 4 -progress-interval 0
    params: {set: {temperature: 0}}
  secret:
    cmd: MOCK -port ${PORT} -model ${MODEL} -keep-bodies 4 -progress-interval 0
    unlisted: true
`

// received is what model's backend was sent last, as the mock kept it
// (read through /upstream, which hotswap forwards as it is).
func received(c client, model string) (path, contentType string, body []byte) {
	c.t.Helper()
	var kept []struct {
		Path        string `json:"path"`
		ContentType string `json:"content_type"`
		Body        string `json:"body"`
	}
	c.json("GET", "/upstream/"+model+"/mock/bodies", "", 200, &kept)
	if len(kept) == 0 {
		c.t.Fatalf("%s's backend has received nothing", model)
	}
	last := kept[len(kept)-1]
	return last.Path, last.ContentType, []byte(last.Body)
}

// receivedJSON is received, decoded.
func receivedJSON(c client, model string) map[string]any {
	c.t.Helper()
	_, _, body := received(c, model)
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		c.t.Fatalf("%s's backend received %q: %v", model, body, err)
	}
	return v
}

func TestShapeSetDefaultStrip(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, shapeConfig))
	c := client{t, url, ""}

	// Everything the client sent that a rule names: set replaces, the
	// default gives way, strip removes, nested keys included.
	var answer map[string]any
	c.json("POST", "/v1/chat/completions", `{"model":"qwen","messages":[{"role":"user","content":"hi"}],`+
		`"temperature":1.5,"top_p":0.5,"logit_bias":{"1":2},"chat_template_kwargs":{"foo":1,"bar":2},"n":1.50}`, 200, &answer)
	got := receivedJSON(c, "qwen")
	want := map[string]any{
		"model": "qwen3-8b", "messages": []any{map[string]any{"role": "user", "content": "hi"}},
		"temperature": 0.6, "top_p": 0.5, "n": 1.5,
		"chat_template_kwargs": map[string]any{"bar": 2.0, "enable_thinking": true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the backend received\n %v\nwant\n %v", got, want)
	}
	if answer["model"] != "qwen" {
		t.Errorf("the client was answered for model %v, not the name it asked for", answer["model"])
	}
	// Number text is kept as the client wrote it.
	if _, _, raw := received(c, "qwen"); !bytes.Contains(raw, []byte(`"n":1.50`)) {
		t.Errorf("the body's other values changed: %s", raw)
	}

	// Nothing sent: the default and the nested set are added.
	c.json("POST", "/v1/chat/completions", `{"model":"qwen","messages":[]}`, 200, nil)
	got = receivedJSON(c, "qwen")
	if got["top_p"] != 0.95 || got["temperature"] != 0.6 ||
		!reflect.DeepEqual(got["chat_template_kwargs"], map[string]any{"enable_thinking": true}) {
		t.Errorf("the backend received %v", got)
	}

	// A model with rules and no upstream_model: its model name goes as
	// the client sent it.
	c.json("POST", "/v1/completions", `{"model":"shaped","prompt":"x","temperature":1}`, 200, &answer)
	if got := receivedJSON(c, "shaped"); got["temperature"] != 0.0 || got["model"] != "shaped" {
		t.Errorf("shaped's backend received %v", got)
	}
}

// TestShapeLeavesOthersAlone: a body that is not JSON (a multipart
// upload), and a request under /upstream, reach the backend byte for byte
// as sent, rules or not.
func TestShapeLeavesOthersAlone(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, shapeConfig))
	c := client{t, url, ""}

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("model", "shaped")
	fw, _ := mw.CreateFormFile("file", "a.wav")
	fw.Write([]byte("RIFF....WAVE{\"temperature\":1}"))
	mw.WriteField("temperature", "1")
	mw.Close()
	req, _ := http.NewRequest("POST", url+"/v1/audio/transcriptions", bytes.NewReader(form.Bytes()))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("transcription: %d", resp.StatusCode)
	}
	if _, ct, body := received(c, "shaped"); !bytes.Equal(body, form.Bytes()) || ct != mw.FormDataContentType() {
		t.Errorf("the multipart body changed on the way:\n%q\nsent\n%q", body, form.Bytes())
	}

	raw := `{ "model":"shaped",  "temperature": 2, "prompt":"x" }`
	c.json("POST", "/upstream/shaped/v1/completions", raw, 200, nil)
	if path, _, body := received(c, "shaped"); string(body) != raw || path != "/v1/completions" {
		t.Errorf("/upstream changed the body: %s %q", path, body)
	}

	// A model without rules: its body goes as it is, spacing and all.
	plain := "{\"model\" : \"secret\",\n\"messages\":[] ,\"temperature\":1.0e0}"
	c.json("POST", "/v1/chat/completions", plain, 200, nil)
	if _, _, body := received(c, "secret"); string(body) != plain {
		t.Errorf("a body without rules changed: %q", body)
	}
}

// TestUpstreamModelNames: the backend (checking names as vLLM does) is
// sent its served name, while the client sees the name it asked for, an
// alias or a variant's included, streamed and not.
func TestUpstreamModelNames(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, shapeConfig))
	c := client{t, url, ""}

	for _, name := range []string{"qwen", "gpt-4o-mini", "qwen-fast", "fast", "qwen-hidden"} {
		var answer map[string]any
		c.json("POST", "/v1/chat/completions", `{"model":"`+name+`","messages":[{"role":"user","content":"hi"}]}`, 200, &answer)
		if answer["model"] != name {
			t.Errorf("asked for %s, answered for %v", name, answer["model"])
		}
		if got := receivedJSON(c, "qwen")["model"]; got != "qwen3-8b" {
			t.Errorf("asked for %s, the backend was sent %v", name, got)
		}

		for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
			models, content, done := streamModels(c, path, `{"model":"`+name+`","stream":true,"prompt":"x","messages":[{"role":"user","content":"hi"}]}`)
			if len(models) < 4 || !done || !strings.HasPrefix(content, "tok0 tok1 tok2") {
				t.Errorf("%s stream for %s: %d events, [DONE] %v, content %q", path, name, len(models), done, content)
			}
			for _, m := range models {
				if m != name {
					t.Errorf("%s stream for %s: an event for model %q", path, name, m)
					break
				}
			}
		}
	}

	// Embeddings: their answer carries the model too.
	var emb map[string]any
	c.json("POST", "/v1/embeddings", `{"model":"fast","input":"x"}`, 200, &emb)
	if emb["model"] != "fast" {
		t.Errorf("embeddings answered for %v", emb["model"])
	}

	// Without hotswap's renaming, the backend refuses the client's name,
	// as vLLM does: the rename is what lets it answer.
	code, body, _ := c.do("POST", "/upstream/qwen/v1/chat/completions", `{"model":"qwen","messages":[]}`)
	if code != 404 || !strings.Contains(string(body), "NotFoundError") {
		t.Errorf("the backend took the client's name: %d %s", code, body)
	}
}

// streamModels posts a streaming request (with c's key) and reads its
// events: the model each names, the content they carry, and whether
// [DONE] ended it.
func streamModels(c client, path, body string) (models []string, content string, done bool) {
	t := c.t
	t.Helper()
	req, err := http.NewRequest("POST", c.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var ev struct {
			Model   string `json:"model"`
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		models = append(models, ev.Model)
		for _, ch := range ev.Choices {
			content += ch.Text + ch.Delta.Content
		}
	}
	return models, content, done
}

// TestVariantsShareOneBackend: requests alternating between a model and
// its variants (and their aliases) are all served by one backend, started
// once, each with its own params; metrics count them under the model.
func TestVariantsShareOneBackend(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, shapeConfig))
	c := client{t, url, ""}

	pids := map[int]bool{}
	thinking := map[string]any{"qwen": true, "qwen-fast": false, "fast": false, "qwen-hidden": true}
	for range 3 {
		for _, name := range []string{"qwen", "qwen-fast", "qwen", "fast", "qwen-hidden"} {
			pids[c.chat(name)] = true
			got := receivedJSON(c, "qwen")
			if kw, _ := got["chat_template_kwargs"].(map[string]any); kw["enable_thinking"] != thinking[name] {
				t.Errorf("%s: the backend received %v", name, got)
			}
			wantTopP := 0.95
			if name == "qwen-hidden" {
				wantTopP = 0.5
			}
			if got["top_p"] != wantTopP {
				t.Errorf("%s: top_p %v, want %v", name, got["top_p"], wantTopP)
			}
		}
	}
	if len(pids) != 1 {
		t.Errorf("served by %d backends: %v", len(pids), pids)
	}

	metric := func(series string) float64 {
		t.Helper()
		v, ok := c.metric(series)
		if !ok {
			t.Errorf("no %s in /metrics", series)
		}
		return v
	}
	if n := metric(`hotswap_backend_starts_total{model="qwen"}`); n != 1 {
		t.Errorf("qwen's backend started %v times", n)
	}
	for reason, want := range map[string]float64{"making_room": 0, "unload": 0, "ttl": 0} {
		if n := metric(`hotswap_evictions_total{model="qwen",reason="` + reason + `"}`); n != want {
			t.Errorf("qwen left memory %v times (%s)", n, reason)
		}
	}
	if n := metric(`hotswap_requests_total{endpoint="chat/completions",model="qwen",status="200"}`); n != 15 {
		t.Errorf("requests under qwen: %v, want 15 (variants count under their model)", n)
	}
	for variant, want := range map[string]float64{"qwen-fast": 6, "qwen-hidden": 3} {
		if n := metric(`hotswap_variant_requests_total{model="qwen",variant="` + variant + `"}`); n != want {
			t.Errorf("requests for %s: %v, want %v", variant, n, want)
		}
	}

	// /admin/models lists the variants under their model, not as models.
	var models []struct {
		Model    string `json:"model"`
		State    string `json:"state"`
		Variants []struct {
			ID       string   `json:"id"`
			Aliases  []string `json:"aliases"`
			Unlisted bool     `json:"unlisted"`
		} `json:"variants"`
	}
	c.json("GET", "/admin/models", "", 200, &models)
	var ids []string
	for _, m := range models {
		ids = append(ids, m.Model)
		if m.Model != "qwen" {
			if len(m.Variants) > 0 {
				t.Errorf("%s has variants %+v", m.Model, m.Variants)
			}
			continue
		}
		if m.State != "ready" || len(m.Variants) != 2 || m.Variants[0].ID != "qwen-fast" ||
			!slices.Equal(m.Variants[0].Aliases, []string{"fast"}) || m.Variants[1].ID != "qwen-hidden" || !m.Variants[1].Unlisted {
			t.Errorf("qwen in /admin/models: %+v", m)
		}
	}
	if !slices.Equal(ids, []string{"qwen", "shaped", "secret"}) {
		t.Errorf("/admin/models lists %v", ids)
	}
}

// listedModel is an entry of GET /v1/models, hotswap's fields included.
type listedModel struct {
	ID           string          `json:"id"`
	Object       string          `json:"object"`
	OwnedBy      string          `json:"owned_by"`
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	Capabilities []string        `json:"capabilities"`
	Metadata     json.RawMessage `json:"metadata"`
	VariantOf    string          `json:"variant_of"`
	Variants     []string        `json:"variants"`
	Aliases      []string        `json:"aliases"`
	State        string          `json:"state"`
}

// TestModelsListShape: /v1/models lists models and variants, unlisted
// ones left out (yet served, and answered by name), with their names,
// descriptions, capabilities and metadata.
func TestModelsListShape(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, shapeConfig))
	c := client{t, url, ""}

	var list struct {
		Object string        `json:"object"`
		Data   []listedModel `json:"data"`
	}
	c.json("GET", "/v1/models", "", 200, &list)
	var ids []string
	byID := map[string]listedModel{}
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		byID[m.ID] = m
	}
	if list.Object != "list" || !slices.Equal(ids, []string{"qwen", "qwen-fast", "shaped"}) {
		t.Fatalf("/v1/models lists %v", ids)
	}
	q := byID["qwen"]
	if q.Name != "Qwen3 8B" || q.Description != "A small model that thinks first." || !slices.Equal(q.Capabilities, []string{"text", "tools"}) ||
		!jsonEqual(q.Metadata, `{"family":"qwen3","context":32768}`) || !slices.Equal(q.Variants, []string{"qwen-fast"}) ||
		q.VariantOf != "" || q.Object != "model" {
		t.Errorf("qwen: %+v (metadata %s)", q, q.Metadata)
	}
	f := byID["qwen-fast"]
	if f.Name != "Qwen3 8B, fast" || f.Description != "" || f.VariantOf != "qwen" || !slices.Equal(f.Aliases, []string{"fast"}) ||
		!slices.Equal(f.Capabilities, []string{"text", "tools"}) || !jsonEqual(f.Metadata, `{"family":"qwen3","context":32768}`) ||
		f.State != "stopped" || f.Object != "model" {
		t.Errorf("qwen-fast: %+v (metadata %s)", f, f.Metadata)
	}
	if s := byID["shaped"]; s.Name != "" || s.Metadata != nil || s.Capabilities != nil {
		t.Errorf("shaped has info it was not given: %+v", s)
	}

	// Unlisted, but there: by name, and served.
	for name, variantOf := range map[string]string{"secret": "", "qwen-hidden": "qwen", "fast": "qwen"} {
		var e listedModel
		c.json("GET", "/v1/models/"+name, "", 200, &e)
		if wantID := map[string]string{"fast": "qwen-fast"}[name]; e.VariantOf != variantOf || wantID != "" && e.ID != wantID {
			t.Errorf("/v1/models/%s: %+v", name, e)
		}
	}
	c.chat("secret")
	code, body, _ := c.do("POST", "/v1/chat/completions", `{"model":"nope","messages":[]}`)
	if code != 404 || strings.Contains(string(body), "secret") || strings.Contains(string(body), "qwen-hidden") {
		t.Errorf("an unknown model's error names unlisted ones: %d %s", code, body)
	}
}

func jsonEqual(raw json.RawMessage, want string) bool {
	var a, b any
	return json.Unmarshal(raw, &a) == nil && json.Unmarshal([]byte(want), &b) == nil && reflect.DeepEqual(a, b)
}

// TestUpstreamModelCompressed: a backend that gzips its JSON answers for
// clients that accept it (a Python server behind GZipMiddleware) is asked
// for them as they are when hotswap renames its answers, so that the
// client, which asked for gzip as Go's and Python's clients do, sees the
// name it used. Without upstream_model, compression goes through.
func TestUpstreamModelCompressed(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, `
ports: 22000-22999
models:
  zipped:
    cmd: MOCK -port ${PORT} -model ${MODEL} -served-model-name served-zipped -gzip -progress-interval 0
    upstream_model: served-zipped
  plain-zipped:
    cmd: MOCK -port ${PORT} -model ${MODEL} -gzip -progress-interval 0
`))
	c := client{t, url, ""}
	for _, path := range []string{"/v1/chat/completions", "/v1/embeddings"} {
		// Go's client asks for gzip, and unpacks what comes so.
		var answer map[string]any
		c.json("POST", path, `{"model":"zipped","input":"x","messages":[{"role":"user","content":"hi"}]}`, 200, &answer)
		if answer["model"] != "zipped" {
			t.Errorf("%s: answered for %v", path, answer["model"])
		}
	}
	_, body, h := c.do("POST", "/v1/chat/completions", `{"model":"zipped","messages":[]}`, "Accept-Encoding", "gzip")
	if h.Get("Content-Encoding") != "" || !json.Valid(body) {
		t.Errorf("a renamed answer came %q: %q", h.Get("Content-Encoding"), body)
	}
	_, body, h = c.do("POST", "/v1/chat/completions", `{"model":"plain-zipped","messages":[]}`, "Accept-Encoding", "gzip")
	if h.Get("Content-Encoding") != "gzip" || json.Valid(body) {
		t.Errorf("an answer hotswap does not rename was not passed on compressed: %q", h.Get("Content-Encoding"))
	}
}
