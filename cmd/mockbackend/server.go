package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// mock is the server's state.
type mock struct {
	opts    options
	out     io.Writer
	started time.Time
	ready   atomic.Bool
	exit    chan int
	ballast []byte // held for the life of the process

	requests atomic.Int64
	mu       sync.Mutex
	inFlight int
	maxIn    int
}

func newMock(opts options, out io.Writer) *mock {
	return &mock{opts: opts, out: out, started: time.Now(), exit: make(chan int, 1)}
}

func (m *mock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Mock-Pid", fmt.Sprint(os.Getpid()))
	w.Header().Set("X-Mock-Model", m.opts.model)
	switch r.URL.Path {
	case "/health":
		if !m.ready.Load() {
			writeJSON(w, 503, map[string]string{"status": "loading"})
			return
		}
		writeJSON(w, 200, map[string]string{"status": "ok"})
		return
	case "/mock/stats":
		m.mu.Lock()
		st := map[string]any{"pid": os.Getpid(), "model": m.opts.model, "requests": m.requests.Load(),
			"in_flight": m.inFlight, "max_in_flight": m.maxIn, "ready": m.ready.Load()}
		m.mu.Unlock()
		writeJSON(w, 200, st)
		return
	case "/v1/models":
		if r.Method != http.MethodGet {
			writeError(w, 405, "method not allowed", "method_not_allowed")
			return
		}
		writeJSON(w, 200, map[string]any{"object": "list", "data": []any{map[string]any{
			"id": m.opts.model, "object": "model", "created": m.started.Unix(), "owned_by": "mockbackend"}}})
		return
	}
	handler, ok := map[string]func(http.ResponseWriter, *http.Request){
		"/v1/chat/completions":     m.chat,
		"/v1/completions":          m.chat,
		"/v1/embeddings":           m.embeddings,
		"/v1/audio/transcriptions": m.transcribe,
		"/v1/audio/translations":   m.transcribe,
		"/v1/audio/speech":         m.speech,
		"/v1/images/generations":   m.images,
		"/v1/rerank":               m.rerank,
	}[r.URL.Path]
	if !ok {
		writeError(w, 404, "unknown path "+r.URL.Path, "not_found")
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, 405, "method not allowed", "method_not_allowed")
		return
	}
	if !m.ready.Load() {
		writeError(w, 503, "model is loading", "loading")
		return
	}
	n := m.requests.Add(1)
	m.mu.Lock()
	m.inFlight++
	m.maxIn = max(m.maxIn, m.inFlight)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.inFlight--
		m.mu.Unlock()
	}()
	crash := m.opts.crashAfter > 0 && n >= m.opts.crashAfter
	if crash && !wantsStream(r) {
		m.crash()
	}
	if crash {
		r = r.WithContext(withCrash(r.Context()))
	}
	handler(w, r)
}

func wantsStream(r *http.Request) bool {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return false
	}
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false
	}
	var v struct {
		Stream bool `json:"stream"`
	}
	return json.Unmarshal(body, &v) == nil && v.Stream
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck
}

func writeError(w http.ResponseWriter, status int, msg, code string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"message": msg, "type": "invalid_request_error", "code": code}})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, 400, "malformed JSON: "+err.Error(), "invalid_json")
		return false
	}
	return true
}

type chatRequest struct {
	Model     string `json:"model"`
	Stream    bool   `json:"stream"`
	MaxTokens int    `json:"max_tokens"`
	Prompt    any    `json:"prompt"`
	Messages  []struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	} `json:"messages"`
}

// chat serves chat and text completions, streamed or not.
func (m *mock) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if !decode(w, r, &req) {
		return
	}
	textMode := r.URL.Path == "/v1/completions"
	n := m.opts.tokens
	if req.MaxTokens > 0 && req.MaxTokens < n {
		n = req.MaxTokens
	}
	echo := fmt.Sprint(req.Prompt)
	if len(req.Messages) > 0 {
		echo = fmt.Sprint(req.Messages[len(req.Messages)-1].Content)
	}
	if !sleep(r.Context(), m.opts.latency) {
		return
	}
	id := fmt.Sprintf("chatcmpl-mock-%d", m.requests.Load())
	created := time.Now().Unix()
	if !req.Stream {
		var text strings.Builder
		for i := range n {
			fmt.Fprintf(&text, "tok%d ", i)
		}
		text.WriteString("| echo: " + echo)
		usage := map[string]int{"prompt_tokens": len(strings.Fields(echo)), "completion_tokens": n,
			"total_tokens": len(strings.Fields(echo)) + n}
		if textMode {
			writeJSON(w, 200, map[string]any{"id": id, "object": "text_completion", "created": created,
				"model": req.Model, "usage": usage, "choices": []any{map[string]any{
					"index": 0, "text": text.String(), "finish_reason": "stop"}}})
			return
		}
		writeJSON(w, 200, map[string]any{"id": id, "object": "chat.completion", "created": created,
			"model": req.Model, "usage": usage, "choices": []any{map[string]any{"index": 0,
				"message": map[string]string{"role": "assistant", "content": text.String()}, "finish_reason": "stop"}}})
		return
	}

	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	chunk := func(delta map[string]any, text string, finish any) map[string]any {
		if textMode {
			return map[string]any{"id": id, "object": "text_completion", "created": created, "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "text": text, "finish_reason": finish}}}
		}
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	if !textMode {
		send(chunk(map[string]any{"role": "assistant"}, "", nil))
	}
	crashing := crashing(r.Context())
	for i := range n {
		if crashing && i == 2 {
			m.crash()
		}
		if !sleep(r.Context(), m.opts.streamInterval) {
			return // the client left: stop generating
		}
		tok := fmt.Sprintf("tok%d ", i)
		send(chunk(map[string]any{"content": tok}, tok, nil))
	}
	send(chunk(map[string]any{}, "", "stop"))
	fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

// vector is a deterministic unit-free embedding of text.
func vector(text string, dim int) []float64 {
	v := make([]float64, dim)
	for i := range v {
		h := fnv.New32a()
		fmt.Fprintf(h, "%d:%s", i, text)
		v[i] = float64(h.Sum32()%2000)/1000 - 1
	}
	return v
}

func (m *mock) embeddings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string `json:"model"`
		Input any    `json:"input"`
	}
	if !decode(w, r, &req) {
		return
	}
	var inputs []string
	switch in := req.Input.(type) {
	case string:
		inputs = []string{in}
	case []any:
		for _, x := range in {
			inputs = append(inputs, fmt.Sprint(x))
		}
	default:
		writeError(w, 400, "input must be a string or an array of strings", "invalid_input")
		return
	}
	data := make([]any, len(inputs))
	for i, in := range inputs {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": vector(in, m.opts.dim)}
	}
	writeJSON(w, 200, map[string]any{"object": "list", "data": data, "model": req.Model,
		"usage": map[string]int{"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})
}

func (m *mock) transcribe(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		writeError(w, 400, "expected a multipart form: "+err.Error(), "invalid_request")
		return
	}
	f, hdr, err := r.FormFile("file")
	if err != nil {
		writeError(w, 400, "missing file", "missing_file")
		return
	}
	n, _ := io.Copy(io.Discard, f)
	f.Close()
	text := fmt.Sprintf("mock transcript of %s (%d bytes)", hdr.Filename, n)
	if r.FormValue("response_format") == "text" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, text)
		return
	}
	writeJSON(w, 200, map[string]string{"text": text})
}

// speech answers with a valid WAV of silence, 10 ms per input character.
func (m *mock) speech(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Input string `json:"input"`
	}
	if !decode(w, r, &req) {
		return
	}
	const rate = 16000
	samples := len(req.Input) * rate / 100
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) } //nolint:errcheck
	b.WriteString("RIFF")
	le(uint32(36 + samples*2))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(1)) // mono
	le(uint32(rate))
	le(uint32(rate * 2))
	le(uint16(2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(samples * 2))
	b.Write(make([]byte, samples*2))
	w.Header().Set("Content-Type", "audio/wav")
	w.Write(b.Bytes()) //nolint:errcheck
}

// tinyPNG is a valid 1x1 transparent PNG.
const tinyPNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

func (m *mock) images(w http.ResponseWriter, r *http.Request) {
	var req struct {
		N int `json:"n"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.N < 1 {
		req.N = 1
	}
	if _, err := base64.StdEncoding.DecodeString(tinyPNG); err != nil {
		panic(err)
	}
	data := make([]any, req.N)
	for i := range data {
		data[i] = map[string]string{"b64_json": tinyPNG}
	}
	writeJSON(w, 200, map[string]any{"created": time.Now().Unix(), "data": data})
}

func (m *mock) rerank(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model     string   `json:"model"`
		Query     string   `json:"query"`
		Documents []string `json:"documents"`
	}
	if !decode(w, r, &req) {
		return
	}
	type result struct {
		Index int     `json:"index"`
		Score float64 `json:"relevance_score"`
	}
	results := make([]result, len(req.Documents))
	for i, d := range req.Documents {
		results[i] = result{i, (vector(req.Query+"|"+d, 1)[0] + 1) / 2}
	}
	sort.Slice(results, func(i, j int) bool { return results[i].Score > results[j].Score })
	writeJSON(w, 200, map[string]any{"model": req.Model, "results": results})
}
