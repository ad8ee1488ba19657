package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxBody bounds what the mock reads of a request body, so that a runaway
// test cannot make it eat the machine's memory.
const maxBody = 64 << 20

// maxMultipartInMem is how much of a multipart upload is kept in memory;
// the rest goes to temporary files.
const maxMultipartInMem = 32 << 20

// mock is one mock backend: its options, its loading state and its
// counters. It is an http.Handler.
type mock struct {
	opts   options
	stdout io.Writer
	stderr io.Writer
	// exit ends the process, and kill ends it by SIGKILL; tests replace
	// them to watch crashes in-process.
	exit    func(code int)
	kill    func()
	pid     int
	started time.Time
	routes  map[string]route
	png     string // base64 of the PNG that image requests get

	ready   atomic.Bool
	readyAt atomic.Int64 // unix nanoseconds
	// ballast is the -hold memory. It is written once while loading and
	// never read; holding it in the mock keeps it alive, and resident,
	// for the life of the process.
	ballast []byte
	touched atomic.Int64 // bytes of ballast touched so far, for progress
	// weightsRead is how long reading -weights took (nanoseconds), and
	// weightsBytes how much it read (see weights.go).
	weightsRead, weightsBytes atomic.Int64

	mu          sync.Mutex
	requests    int // model POSTs received while ready
	inFlight    int
	maxInFlight int
	conns       int // connections accepted
	openConns   int // connections open (a taken-over one counts as closed)
	modelConns  int // connections that carried a model request
	errors      int // model POSTs answered with -error-every's error
	tokens      int // completion tokens sent (see stats.Tokens)
	arrived     int // model POSTs that arrived while ready (see keptBody.N)
	kept        []keptBody

	sleeper sleeper // vLLM's sleep mode (-sleep-mode; see sleep.go)
}

// route is how one path is served.
type route struct {
	method string
	// model says the path is one of the model's endpoints (not /health or
	// /mock/stats): it is refused while loading, and its POSTs are counted.
	model bool
	// streams says the endpoint can answer with SSE, so that a crash on
	// it waits for a couple of chunks when the request asks for a stream.
	streams bool
	serve   func(w http.ResponseWriter, r *http.Request, c *call)
}

// call is what the dispatcher learned about one model POST.
type call struct {
	n     int  // its number, counting from 1
	crash bool // it is the -crash-after request
	fail  bool // it is one of -error-every's, answered with an error (never the crashing one)
}

func newMock(opts options, stdout, stderr io.Writer, exit func(int)) *mock {
	m := &mock{
		opts:    opts,
		stdout:  stdout,
		stderr:  stderr,
		exit:    exit,
		kill:    func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) },
		pid:     os.Getpid(),
		started: time.Now(),
		png:     tinyPNG(),
	}
	post := func(serve func(http.ResponseWriter, *http.Request, *call)) route {
		return route{method: http.MethodPost, model: true, serve: serve}
	}
	streaming := func(serve func(http.ResponseWriter, *http.Request, *call)) route {
		return route{method: http.MethodPost, model: true, streams: true, serve: serve}
	}
	get := func(model bool, serve func(http.ResponseWriter, *http.Request)) route {
		return route{method: http.MethodGet, model: model, serve: func(w http.ResponseWriter, r *http.Request, _ *call) { serve(w, r) }}
	}
	m.routes = map[string]route{
		"/health":      get(false, m.health),
		"/mock/stats":  get(false, m.stats),
		"/mock/bodies": get(false, m.bodies),

		"/v1/models":                get(true, m.models),
		"/v1/chat/completions":      streaming(m.chatCompletions),
		"/v1/completions":           streaming(m.textCompletions),
		"/v1/responses":             streaming(m.responses),
		"/v1/messages":              streaming(m.messages),
		"/v1/messages/count_tokens": post(m.countTokens),
		"/v1/embeddings":            post(m.embeddings),
		"/v1/rerank":                post(m.rerank),
		"/v1/audio/transcriptions":  post(m.transcribe),
		"/v1/audio/translations":    post(m.transcribe),
		"/v1/audio/speech":          post(m.speech),
		"/v1/audio/voices":          get(true, m.voices),
		"/v1/images/generations":    post(m.imageGenerations),
		"/v1/images/edits":          post(m.imageEdits),
		"/v1/images/variations":     post(m.imageEdits),

		// llama.cpp's own endpoints, in their shapes.
		"/completion":     streaming(m.llamaCompletion),
		"/infill":         streaming(m.llamaCompletion),
		"/tokenize":       post(m.tokenize),
		"/detokenize":     post(m.detokenize),
		"/apply-template": post(m.applyTemplate),
		"/embedding":      post(m.embeddings),
		"/reranking":      post(m.rerank),
		"/rerank":         post(m.rerank),
		"/props":          get(true, m.props),
		// llama-server serves its OpenAI endpoints without /v1 too.
		"/chat/completions": streaming(m.chatCompletions),
		"/completions":      streaming(m.textCompletions),
		"/embeddings":       post(m.embeddings),
	}
	m.sleepRoutes()
	return m
}

// server is the HTTP server the mock runs under, with the connection
// habits its flags ask for.
func (m *mock) server() *http.Server {
	return &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: m.opts.idleTimeout,
		ConnState: m.countConn,
		ConnContext: func(ctx context.Context, conn net.Conn) context.Context {
			if m.opts.splitWrites {
				noDelayOff(conn)
			}
			return context.WithValue(ctx, connKey{}, new(connUse))
		}}
}

// connKey keys a request's connUse in its context.
type connKey struct{}

// connUse says whether a connection has carried a model request. Only the
// connection's own goroutine touches it: HTTP/1 serves one request at a
// time per connection.
type connUse struct{ model bool }

// countModelConn counts the connection r came on, the first time it
// carries a model request: health checks come on connections of their own,
// and tests ask how a proxy uses connections for requests.
func (m *mock) countModelConn(r *http.Request) {
	u, _ := r.Context().Value(connKey{}).(*connUse)
	if u == nil || u.model {
		return
	}
	u.model = true
	m.mu.Lock()
	m.modelConns++
	m.mu.Unlock()
}

// countConn keeps the connection counters that /mock/stats reports, so
// that tests can see how a client reuses connections.
func (m *mock) countConn(_ net.Conn, state http.ConnState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch state {
	case http.StateNew:
		m.conns++
		m.openConns++
	case http.StateClosed, http.StateHijacked:
		m.openConns--
	}
}

// ServeHTTP serves a request, its answer split in two writes with
// -split-writes (health and stats too, as a Python server's would be) and
// its JSON gzipped with -gzip.
func (m *mock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.opts.splitWrites {
		sw := &splitWriter{ResponseWriter: w}
		defer sw.finish()
		w = sw
	}
	if m.opts.gzip && acceptsGzip(r) {
		gw := &gzipWriter{ResponseWriter: w}
		defer gw.finish()
		w = gw
	}
	m.serve(w, r)
}

// serve routes a request, answers 503 on the model's endpoints while
// loading, and counts their POSTs, crashing on the -crash-after one and
// answering -error-every's with an error.
func (m *mock) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Mock-Pid", strconv.Itoa(m.pid))
	h.Set("X-Mock-Model", m.opts.model)
	// What arrived, raw, so that tests see the path a proxy forwarded.
	h.Set("X-Mock-Path", r.RequestURI)
	if origin := r.Header.Get("Origin"); m.opts.cors && origin != "" {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if m.opts.idleTimeout > 0 {
		// llama-server announces its idle timeout, and keeps to it.
		h.Set("Keep-Alive", fmt.Sprintf("timeout=%d, max=100", int(m.opts.idleTimeout.Round(time.Second)/time.Second)))
	}

	rt, ok := m.routes[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, "invalid_request_error", "not_found",
			fmt.Sprintf("unknown endpoint %s %s", r.Method, r.URL.Path))
		return
	}
	if r.Method != rt.method && (rt.method != http.MethodGet || r.Method != http.MethodHead) {
		h.Set("Allow", rt.method)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed",
			fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, rt.method))
		return
	}
	if !rt.model {
		rt.serve(w, r, nil)
		return
	}
	m.countModelConn(r)
	if !m.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "loading", "model is loading")
		return
	}
	if rt.method != http.MethodPost {
		rt.serve(w, r, nil)
		return
	}
	if m.opts.keepBodies > 0 || len(m.opts.served) > 0 {
		body, err := readBody(w, r)
		if err != nil {
			badRequest(w, "invalid_body", "reading the body: "+err.Error())
			return
		}
		m.mu.Lock()
		m.arrived++
		n := m.arrived
		m.mu.Unlock()
		if m.opts.keepBodies > 0 {
			m.keep(n, r, body)
		}
		if len(m.opts.served) > 0 {
			if _, ok := m.servedModel(w, r, body); !ok {
				return
			}
		}
	}

	if !m.waitAwake(w, r) {
		return // the client left while the mock slept
	}
	c := m.begin()
	defer m.end()
	// A crashing stream sends a little first, so that clients see a
	// backend die mid-answer; anything else dies before answering.
	if c.crash && !(rt.streams && wantsStream(r)) {
		m.die()
	}
	if !sleep(r.Context(), m.opts.latency) {
		return // the client left
	}
	if c.fail {
		m.mu.Lock()
		m.errors++
		m.mu.Unlock()
		writeError(w, m.opts.errorStatus, "server_error", "mock_error",
			fmt.Sprintf("mock: error as told (-error-every %d)", m.opts.errorEvery))
		return
	}
	rt.serve(w, r, c)
}

// begin counts a model POST in.
func (m *mock) begin() *call {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	m.inFlight++
	m.maxInFlight = max(m.maxInFlight, m.inFlight)
	c := &call{n: m.requests, crash: m.opts.crashAfter > 0 && m.requests == m.opts.crashAfter}
	c.fail = !c.crash && m.opts.errorEvery > 0 && m.requests%m.opts.errorEvery == 0
	return c
}

// sent counts n completion tokens as sent.
func (m *mock) sent(n int) {
	m.mu.Lock()
	m.tokens += n
	m.mu.Unlock()
}

// end counts a model POST out.
func (m *mock) end() {
	m.mu.Lock()
	m.inFlight--
	m.mu.Unlock()
}

// die ends the process as a backend dying of a bug would: status 3, no
// answer, connections cut.
func (m *mock) die() {
	fmt.Fprintf(m.stderr, "mock %s: crashing as told (-crash-after %d)\n", m.opts.model, m.opts.crashAfter)
	m.exit(3)
	// Reached only when a test has replaced exit: abort the handler so the
	// client sees the connection cut, as it would with a real crash.
	panic(http.ErrAbortHandler)
}

func (m *mock) health(w http.ResponseWriter, r *http.Request) {
	if !m.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "loading"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// stats is GET /mock/stats: tests read it to check that a backend was
// reused, how many requests reached it, how many it served at once, how
// many connections it was sent them on, how many it failed on purpose and
// how many tokens it sent.
type stats struct {
	Pid         int    `json:"pid"`
	Model       string `json:"model"`
	Requests    int    `json:"requests"`
	InFlight    int    `json:"in_flight"`
	MaxInFlight int    `json:"max_in_flight"`
	Ready       bool   `json:"ready"`
	Connections int    `json:"connections"`
	OpenConns   int    `json:"open_connections"`
	ModelConns  int    `json:"model_connections"`
	// Errors counts the model POSTs answered with -error-every's error.
	Errors int `json:"errors"`
	// Tokens counts the completion tokens sent by chat and text
	// completions (/v1/chat/completions, /v1/completions, and the same
	// without /v1) only: a whole
	// answer's n (its usage's completion_tokens) when it is written, and
	// a stream's content chunks one by one as each is sent, so that a
	// stream the client abandons counts only what went out. llama.cpp's
	// /completion and /infill, Responses and Messages are not counted.
	Tokens int `json:"tokens"`
	// ReadyAt is when it became ready, in Unix nanoseconds (0: not yet):
	// tests measure how soon a proxy notices.
	ReadyAt int64 `json:"ready_at"`
	// WeightsReadS is how long reading -weights took, WeightsBytes how
	// much was read (0 without -weights, and until read).
	WeightsReadS float64 `json:"weights_read_s"`
	WeightsBytes int64   `json:"weights_bytes"`
	sleepStats
}

func (m *mock) stats(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	st := stats{Pid: m.pid, Model: m.opts.model, Requests: m.requests,
		InFlight: m.inFlight, MaxInFlight: m.maxInFlight, Ready: m.ready.Load(),
		Connections: m.conns, OpenConns: m.openConns, ModelConns: m.modelConns,
		Errors: m.errors, Tokens: m.tokens, ReadyAt: m.readyAt.Load()}
	m.mu.Unlock()
	st.sleepStats = m.sleepStats()
	st.WeightsReadS = time.Duration(m.weightsRead.Load()).Seconds()
	st.WeightsBytes = m.weightsBytes.Load()
	writeJSON(w, http.StatusOK, st)
}

// models is GET /v1/models: -model, or the served names as vLLM lists
// them.
func (m *mock) models(w http.ResponseWriter, r *http.Request) {
	names := m.opts.served
	if len(names) == 0 {
		names = []string{m.opts.model}
	}
	data := make([]any, 0, len(names))
	for _, name := range names {
		data = append(data, map[string]any{
			"id": name, "object": "model", "created": m.started.Unix(), "owned_by": "mockbackend",
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the mock's own values get here: a bug
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n')) //nolint:errcheck // a client that left is no error here
}

// writeError answers with an error in OpenAI's shape.
func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": code}})
}

// badRequest answers 400 in OpenAI's shape.
func badRequest(w http.ResponseWriter, code, msg string) {
	writeError(w, http.StatusBadRequest, "invalid_request_error", code, msg)
}

// decode reads a JSON request body into v, or answers 400 and returns false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		badRequest(w, "invalid_body", "reading the body: "+err.Error())
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		badRequest(w, "invalid_json", "malformed JSON: "+err.Error())
		return false
	}
	return true
}

// wantsStream peeks at a JSON body's "stream" field and puts the body back.
// Only the crashing request needs it, so its cost does not matter.
func wantsStream(r *http.Request) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false
	}
	var v struct {
		Stream bool `json:"stream"`
	}
	return json.Unmarshal(body, &v) == nil && v.Stream
}

// sleep waits d, or less if ctx ends first; it reports whether ctx is
// still live, so callers stop working for a client that left.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// text reads an OpenAI text field that may be a string, an array of
// strings, an array of content parts ({"type":"text","text":...}) or one
// such object. Other shapes read as "".
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var part struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &part) == nil {
		return part.Text
	}
	var parts []json.RawMessage
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	texts := make([]string, len(parts))
	for i, p := range parts {
		texts[i] = text(p)
	}
	return strings.Join(texts, " ")
}

// words is the mock's token count: words, which is close enough for usage.
func words(s string) int {
	return len(strings.Fields(s))
}
