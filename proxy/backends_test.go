package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// habitsConfig has backends with real backends' connection habits.
const habitsConfig = `
ports: 20000-20999
health_timeout: 10s
stop_timeout: 2s
models:
  llama:
    # llama-server: closes the connection after every stream, and drops
    # idle ones after a while; both without a Connection: close.
    cmd: MOCK -port ${PORT} -model ${MODEL} -close-after-stream -idle-timeout 1s -stream-interval 1ms -tokens 3 -progress-interval 0
    parallel: 4
  held:
    # hotswap told to keep idle connections longer than the backend does.
    cmd: MOCK -port ${PORT} -model ${MODEL} -idle-timeout 1s -progress-interval 0
    upstream_keepalive: 1m
  polite:
    cmd: MOCK -port ${PORT} -model ${MODEL} -idle-timeout 1m -progress-interval 0
    upstream_keepalive: 200ms
  fresh:
    cmd: MOCK -port ${PORT} -model ${MODEL} -progress-interval 0
    upstream_keepalive: 0
`

// mockStats is what a mock backend reports at /mock/stats.
type mockStats struct {
	Requests   int `json:"requests"`
	InFlight   int `json:"in_flight"`
	ModelConns int `json:"model_connections"`
	OpenConns  int `json:"open_connections"`
}

// backendStats asks model's backend directly, on a connection of its own
// that it closes.
func (s *stack) backendStats(model string) mockStats {
	s.t.Helper()
	st := s.status(model)
	if st.Upstream == "" {
		s.t.Fatalf("%s is not running", model)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(st.Upstream + "/mock/stats")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ms mockStats
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
		s.t.Fatal(err)
	}
	return ms
}

// TestStreamThenChatOnABackendThatClosesAfterStreams: llama-server closes
// the connection after each stream without saying so. The chat after a
// stream must not get that connection, nor a 502: each request reaches
// the backend exactly once, on one new connection per stream.
func TestStreamThenChatOnABackendThatClosesAfterStreams(t *testing.T) {
	s := newStack(t, habitsConfig)
	const rounds = 10
	for i := range rounds {
		resp, events, err := s.stream("llama", nil)
		if err != nil || resp.StatusCode != 200 || len(events) == 0 || events[len(events)-1].data != "[DONE]" {
			t.Fatalf("round %d: stream %v, %d events, %v", i, resp.Status, len(events), err)
		}
		if r := s.chat("llama", "after a stream"); r.status != 200 {
			t.Fatalf("round %d: chat after a stream: %d %s", i, r.status, r.body)
		}
	}
	st := s.backendStats("llama")
	if st.Requests != 2*rounds {
		t.Errorf("the backend got %d requests, want %d: a request was lost or sent twice", st.Requests, 2*rounds)
	}
	// One connection per stream: the chat after it opens the next.
	if st.ModelConns != rounds+1 {
		t.Errorf("%d connections for %d streams, want %d", st.ModelConns, rounds, rounds+1)
	}
}

// TestIdleConnectionTheBackendDropped: the backend dropped the idle
// connection hotswap was keeping; the next request goes out on a new one.
func TestIdleConnectionTheBackendDropped(t *testing.T) {
	s := newStack(t, habitsConfig)
	if r := s.chat("held", "one"); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return s.backendStats("held").OpenConns == 1 }) {
		t.Fatal("the backend never dropped the idle connection")
	}
	if r := s.chat("held", "two"); r.status != 200 {
		t.Fatalf("after the backend dropped the connection: %d %s", r.status, r.body)
	}
	if n := s.backendStats("held").Requests; n != 2 {
		t.Errorf("the backend got %d requests, want 2", n)
	}
}

// TestIdleConnectionsAreLetGoFirst: hotswap closes an idle connection
// after upstream_keepalive, before the backend's own timeout.
func TestIdleConnectionsAreLetGoFirst(t *testing.T) {
	s := newStack(t, habitsConfig)
	if r := s.chat("polite", "one"); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return s.backendStats("polite").OpenConns == 1 }) {
		t.Fatal("hotswap kept its idle connection past upstream_keepalive")
	}
	if r := s.chat("polite", "two"); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestUpstreamKeepaliveZero: a new connection for every request.
func TestUpstreamKeepaliveZero(t *testing.T) {
	s := newStack(t, habitsConfig)
	for i := range 3 {
		if r := s.chat("fresh", fmt.Sprint(i)); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	if st := s.backendStats("fresh"); st.Requests != 3 || st.ModelConns != 3 {
		t.Errorf("stats %+v, want 3 requests on 3 connections", st)
	}
}

// rawRequest sends a request exactly as written (hotswap is not to see a
// path a client library cleaned) and returns the answer, body read.
func (s *stack) rawRequest(method, target, contentType, body string) (*http.Response, string) {
	s.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		method, target, contentType, len(body), body)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		s.t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp, b.String()
}

// TestForwardedByModelNotByPath: every path clients use reaches the
// backend of the model the request names, unchanged, wherever the model
// is named.
func TestForwardedByModelNotByPath(t *testing.T) {
	s := newStack(t, baseConfig)
	const chat = `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct {
		name, method, target, contentType, body string
		status                                  int
		want                                    string // in the body
	}{
		{"responses", "POST", "/v1/responses", "application/json", `{"model":"chat-b","input":"hi"}`, 200, `"object":"response"`},
		{"responses stream", "POST", "/v1/responses", "application/json", `{"model":"chat-b","input":"hi","stream":true}`, 200, "event: response.completed"},
		{"messages", "POST", "/v1/messages", "application/json", `{"model":"chat-b","max_tokens":5,` + chat + `}`, 200, `"type":"message"`},
		{"messages stream", "POST", "/v1/messages", "application/json", `{"model":"chat-b","max_tokens":5,"stream":true,` + chat + `}`, 200, "event: message_stop"},
		{"count tokens", "POST", "/v1/messages/count_tokens", "application/json", `{"model":"chat-b",` + chat + `}`, 200, `"input_tokens":1`},
		{"voices by query", "GET", "/v1/audio/voices?model=chat-b", "", ``, 200, `"voices"`},
		{"llama.cpp completion", "POST", "/completion", "application/json", `{"model":"chat-b","prompt":"once"}`, 200, `"content":"tok0`},
		{"llama.cpp infill", "POST", "/infill", "application/json", `{"model":"chat-b","prompt":"x"}`, 200, `"stop":true`},
		{"llama.cpp tokenize", "POST", "/tokenize", "application/json", `{"model":"chat-b","content":"a b"}`, 200, `"tokens":[`},
		{"llama.cpp detokenize", "POST", "/detokenize", "application/json", `{"model":"chat-b","tokens":[1]}`, 200, `"content":"t1"`},
		{"llama.cpp embedding", "POST", "/embedding", "application/json", `{"model":"chat-b","input":"x"}`, 200, `"embedding"`},
		{"llama.cpp reranking", "POST", "/reranking", "application/json", `{"model":"chat-b","query":"x","documents":["x"]}`, 200, `"relevance_score"`},
		{"llama.cpp props", "GET", "/props?model=chat-b", "", ``, 200, `"model_alias":"chat-b"`},
		{"a path backends add next", "POST", "/v1/brand/new", "application/json", `{"model":"chat-b"}`, 404, "unknown endpoint POST /v1/brand/new"},
		{"JSON sent as a form (curl -d)", "POST", "/v1/chat/completions", "application/x-www-form-urlencoded", `{"model":"chat-b",` + chat + `}`, 200, "echo: hi"},
		{"a form", "POST", "/v1/brand/new", "application/x-www-form-urlencoded", `prompt=x&model=chat-b`, 404, "unknown endpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := s.rawRequest(c.method, c.target, c.contentType, c.body)
			if resp.StatusCode != c.status || !strings.Contains(body, c.want) {
				t.Fatalf("%d %q; want %d with %q", resp.StatusCode, body, c.status, c.want)
			}
			// It reached chat-b's backend, on the path and query the
			// client sent.
			if got := resp.Header.Get("X-Mock-Model"); got != "chat-b" {
				t.Errorf("answered by %q", got)
			}
			if got := resp.Header.Get("X-Mock-Path"); got != c.target {
				t.Errorf("the backend got %q, want %q", got, c.target)
			}
		})
	}
}

// TestAliasInTheQuery: ?model= takes aliases as the body's model does,
// and the backend gets the name the client used.
func TestAliasInTheQuery(t *testing.T) {
	s := newStack(t, baseConfig)
	resp, body := s.rawRequest("GET", "/v1/audio/voices?model=gpt-test", "", "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Mock-Model") != "chat-a" || !strings.Contains(body, `"model":"gpt-test"`) {
		t.Errorf("%d from %q: %s", resp.StatusCode, resp.Header.Get("X-Mock-Model"), body)
	}
}

// TestForwardedPathIsTheRoutedPath: routing looks at the cleaned path, so
// the cleaned path is what goes upstream, never the raw one.
func TestForwardedPathIsTheRoutedPath(t *testing.T) {
	s := newStack(t, baseConfig)
	body := `{"model":"chat-b","messages":[{"role":"user","content":"hi"}]}`
	for target, want := range map[string]string{
		"/mock/stats/../../v1/chat/completions": "/v1/chat/completions",
		"//v1/chat/completions":                 "/v1/chat/completions",
		"/v1/./chat/completions":                "/v1/chat/completions",
		"/v1/chat%2Fcompletions":                "/v1/chat/completions",
		"/v1/chat/completions?x=a%20b&y=%2F":    "/v1/chat/completions?x=a%20b&y=%2F",
		"/v1/brand%20new?model=chat-b":          "/v1/brand%20new?model=chat-b",
	} {
		resp, got := s.rawRequest("POST", target, "application/json", body)
		if path := resp.Header.Get("X-Mock-Path"); path != want {
			t.Errorf("%s reached the backend as %q, want %q (%d %s)", target, path, want, resp.StatusCode, got)
		}
	}
	// A path that cleans to one outside what is forwarded is not.
	if resp, _ := s.rawRequest("POST", "/v1/../mock/stats", "application/json", body); resp.StatusCode != 404 ||
		resp.Header.Get("X-Mock-Model") != "" {
		t.Errorf("/v1/../mock/stats: %d from %q", resp.StatusCode, resp.Header.Get("X-Mock-Model"))
	}
}
