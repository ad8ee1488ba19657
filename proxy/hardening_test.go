package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// hardConfig has short limits, so that tests see them act.
const hardConfig = `
ports: 20000-20999
health_timeout: 10s
stop_timeout: 2s
max_body: 64KiB
server:
  max_conns: 8
  max_conns_per_ip: 4
  header_timeout: 500ms
  stall_timeout: 500ms
scheduling:
  queue_timeout: 30s
models:
  firehose:
    # An answer far larger than any socket buffer, as fast as it goes.
    cmd: MOCK -port ${PORT} -model ${MODEL} -tokens 1000000 -stream-interval 0 -progress-interval 0
    parallel: 1
  slow:
    cmd: MOCK -port ${PORT} -model ${MODEL} -tokens 200 -stream-interval 50ms -progress-interval 0
`

// dialFrom opens a connection to the stack from a loopback address of its
// own (127.0.0.2 and so on), as a different client would come.
func (s *stack) dialFrom(ip string) net.Conn {
	s.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// get sends a GET on c and reads the answer.
func get(t *testing.T, c net.Conn, path string) (*http.Response, string, error) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path); err != nil {
		return nil, "", err
	}
	return readAnswer(c)
}

func readAnswer(c net.Conn) (*http.Response, string, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// errorCode is the code of an OpenAI error body, or "".
func errorCode(body string) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}

// TestConnectionCaps: a client over max_conns_per_ip is refused with an
// answer, while others are served; over max_conns everyone new is, until
// connections close.
func TestConnectionCaps(t *testing.T) {
	s := newStack(t, hardConfig)
	s.client.CloseIdleConnections()
	var held []net.Conn
	for range 4 {
		held = append(held, s.dialFrom("127.0.0.2"))
	}
	// Every one of those was accepted and is served.
	for _, c := range held {
		if resp, _, err := get(t, c, "/health"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection: %v %v", resp, err)
		}
	}
	over := s.dialFrom("127.0.0.2")
	resp, body, err := readAnswer(over)
	if err != nil || resp.StatusCode != 429 || errorCode(body) != "too_many_connections" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fifth connection from 127.0.0.2: %v %q %v", resp, body, err)
	}
	// Others are served meanwhile.
	other := s.dialFrom("127.0.0.1")
	if resp, _, err := get(t, other, "/health"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("127.0.0.1 while 127.0.0.2 is at its cap: %v %v", resp, err)
	}
	other.Close()
	// Fill max_conns (8) from another address: the next is refused with 503.
	for range 4 {
		held = append(held, s.dialFrom("127.0.0.3"))
	}
	if !mocktest.Eventually(5*time.Second, func() bool {
		resp, body, err := readAnswer(s.dialFrom("127.0.0.4"))
		return err == nil && resp.StatusCode == 503 && errorCode(body) == "too_many_connections"
	}) {
		t.Fatal("over max_conns, a new connection was not refused with 503")
	}
	for _, c := range held {
		c.Close()
	}
	if !mocktest.Eventually(5*time.Second, func() bool {
		resp, _, err := get(t, s.dialFrom("127.0.0.4"), "/health")
		return err == nil && resp.StatusCode == 200
	}) {
		t.Fatal("closed connections never made room")
	}
}

// TestSlowlorisIsCutAtTheHeaderTimeout: a client sending its headers a
// byte at a time is answered 408 and cut off at server.header_timeout.
func TestSlowlorisIsCutAtTheHeaderTimeout(t *testing.T) {
	s := newStack(t, hardConfig)
	c := s.dialFrom("127.0.0.1")
	answered := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c)
		answered <- string(b)
	}()
	began := time.Now()
	fmt.Fprint(c, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second) // one, not one per round
	for {
		select {
		case got := <-answered:
			if !strings.HasPrefix(got, "HTTP/1.1 408") || !strings.Contains(got, "request_timeout") {
				t.Errorf("answered %q", got)
			}
			if took := time.Since(began); took > 5*time.Second {
				t.Errorf("cut after %s", took)
			}
			return
		case <-tick.C:
			if _, err := c.Write([]byte("X")); err != nil {
				t.Logf("write: %v", err)
			}
		case <-deadline:
			t.Fatal("a client sending a byte at a time was never cut off")
		}
	}
}

// TestNonReadingClientIsDroppedAtTheStallTimeout: a streaming client that
// stops reading holds its model's only slot until server.stall_timeout;
// then it is dropped, its backend request aborted, and the next request is
// served.
func TestNonReadingClientIsDroppedAtTheStallTimeout(t *testing.T) {
	s := newStack(t, hardConfig)
	c := s.dialFrom("127.0.0.1")
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	body := `{"model":"firehose","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body)
	// It never reads. The next request for the model waits for the slot.
	done := make(chan response, 1)
	go func() {
		done <- s.postJSONQuiet("/v1/chat/completions", `{"model":"firehose","max_tokens":1,"messages":[]}`)
	}()
	select {
	case r := <-done:
		if r.status != 200 {
			t.Fatalf("the next request: %d %s", r.status, r.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client that stopped reading still holds the model's slot")
	}
	// The lease goes back once the server has finished writing the
	// answer, a moment after the client has read it.
	if !mocktest.Eventually(5*time.Second, func() bool { return s.status("firehose").InFlight == 0 }) {
		t.Errorf("%d requests still in flight", s.status("firehose").InFlight)
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return s.backendStats("firehose").InFlight == 0 }) {
		t.Error("the dropped client's backend request was never aborted")
	}
}

// postJSONQuiet is postJSON for another goroutine: errors are answers.
func (s *stack) postJSONQuiet(path, body string) response {
	resp, err := s.client.Post(s.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return response{status: -1, body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// rawExchange writes raw on a new connection and returns all that comes
// back until the server closes it.
func (s *stack) rawExchange(raw string) string {
	s.t.Helper()
	c := s.dialFrom("127.0.0.1")
	if _, err := io.WriteString(c, raw); err != nil {
		s.t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		s.t.Fatalf("reading the answer: %v (got %q)", err, b)
	}
	return string(b)
}

func TestHeadersTooLarge(t *testing.T) {
	s := newStack(t, hardConfig)
	got := s.rawExchange("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 431") || !strings.Contains(got, "request_header_fields_too_large") {
		t.Errorf("answered %.300q", got)
	}
	// Its log line says who sent it, not a method and path never read,
	// and no nonsense duration.
	for _, e := range s.logs.FilterMessage("request").All() {
		f := e.ContextMap()
		if f["status"] == int64(431) {
			if _, ok := f["path"]; ok {
				t.Errorf("log line of an unread request: %v", f)
			}
			if f["from"] == nil {
				t.Errorf("log line without the client: %v", f)
			}
			return
		}
	}
	t.Error("no log line for the 431")
}

// TestBodyTooLargeIsRefusedBeforeItIsSent: a body declared over max_body
// with Expect: 100-continue gets 413 and never "100 Continue"; a chunked
// one, whose size shows only as it comes, gets 413 once it passes the
// limit, readable by the client (not a reset); one sent at once, without
// Expect, too.
func TestBodyTooLargeIsRefusedBeforeItIsSent(t *testing.T) {
	s := newStack(t, hardConfig)
	got := s.rawExchange("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
		"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 413") || strings.Contains(got, "100 Continue") || !strings.Contains(got, "request_too_large") {
		t.Errorf("declared too large: %.300q", got)
	}

	c := s.dialFrom("127.0.0.1")
	fmt.Fprint(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
		"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("chunked: %q %v", line, err)
	}
	br.ReadString('\n') // the blank line after 100 Continue
	chunk := strings.Repeat("x", 8<<10)
	for range 16 { // 128KiB, over the 64KiB limit
		if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
			break // the server has answered and stopped reading
		}
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("chunked: no answer after the body passed the limit: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || errorCode(string(b)) != "request_too_large" {
		t.Errorf("chunked: %d %s", resp.StatusCode, b)
	}

	for i := range 20 {
		big := `{"model":"slow","x":"` + strings.Repeat("x", 200<<10) + `"}`
		r := s.do("POST", "/v1/chat/completions", "application/json", []byte(big))
		if r.status != 413 {
			t.Fatalf("round %d, sent at once: %d %s", i, r.status, r.body)
		}
	}
	// Each is logged with its path, never a path it did not have.
	lines := 0
	for _, e := range s.logs.FilterMessage("request").All() {
		if f := e.ContextMap(); f["status"] == int64(413) {
			lines++
			if path, ok := f["path"]; ok && path != "/v1/chat/completions" {
				t.Errorf("log line %v", f)
			}
		}
	}
	if lines != 22 {
		t.Errorf("%d log lines for 22 refused bodies", lines)
	}
}

func TestHeadOnGetEndpoints(t *testing.T) {
	s := newStack(t, hardConfig)
	for _, path := range []string{"/health", "/v1/models", "/v1/models/slow"} {
		r := s.do("HEAD", path, "", nil)
		if r.status != 200 || len(r.body) != 0 {
			t.Errorf("HEAD %s: %d %q", path, r.status, r.body)
		}
	}
	if r := s.do("HEAD", "/v1/models/nope", "", nil); r.status != 404 {
		t.Errorf("HEAD of an unknown model: %d", r.status)
	}
}

// TestAHugeModelNameIsAnsweredBriefly: the name goes back cut short, in
// the answer and in the log.
func TestAHugeModelNameIsAnsweredBriefly(t *testing.T) {
	s := newStack(t, strings.Replace(hardConfig, "max_body: 64KiB", "max_body: 4MiB", 1))
	name := strings.Repeat("m", 1<<20)
	r := s.postJSON("/v1/chat/completions", map[string]any{"model": name, "messages": []any{}})
	if r.status != 404 || len(r.body) > 2<<10 {
		t.Fatalf("%d, %d bytes", r.status, len(r.body))
	}
	if msg, _, code := r.apiError(t); code != "model_not_found" || !strings.Contains(msg, "1048576 bytes, cut") {
		t.Errorf("%s: %s", code, msg)
	}
	r = s.do("GET", "/"+strings.Repeat("p", 10<<10), "", nil)
	if r.status != 404 || len(r.body) > 2<<10 {
		t.Errorf("long path: %d, %d bytes", r.status, len(r.body))
	}
	for _, e := range s.logs.All() {
		var size int
		for _, f := range e.Context {
			size += len(f.String) + len(fmt.Sprint(f.Interface))
		}
		if size > 4<<10 {
			t.Errorf("a log line of %d bytes: %s", size, e.Message)
		}
	}
}

// TestStreamsCutAtShutdownSaySo: a stream still running when the shutdown
// grace ends gets one error event saying hotswap is shutting down, not that
// its backend died.
func TestStreamsCutAtShutdownSaySo(t *testing.T) {
	s := newStack(t, hardConfig)
	var wg sync.WaitGroup
	wg.Add(1)
	var events []event
	var err error
	go func() {
		defer wg.Done()
		_, events, err = s.stream("slow", nil)
	}()
	if !mocktest.Eventually(10*time.Second, func() bool { return s.status("slow").InFlight == 1 }) {
		t.Fatal("the stream never started")
	}
	s.shutdown(100 * time.Millisecond)
	wg.Wait()
	if err != nil || len(events) < 2 {
		t.Fatalf("%d events, %v", len(events), err)
	}
	last := events[len(events)-1].data
	if errorCode(last) != "shutting_down" {
		t.Errorf("the stream ended with %q", last)
	}
}

// TestDrainTimeoutCutsCleanly: a request runs on a model that must make
// room; past drain_timeout it is cut, and its client gets a clean OpenAI
// error saying so, while the request that needed the room is served.
func TestDrainTimeoutCutsCleanly(t *testing.T) {
	s := newStack(t, `
ports: 20000-20999
stop_timeout: 2s
scheduling: {max_wait: 0s, drain_timeout: 300ms}
models:
  chat-a:
    cmd: MOCK -port ${PORT} -model ${MODEL} -latency 1h -progress-interval 0
    memory: {ram: 6GiB}
  chat-b:
    cmd: MOCK -port ${PORT} -model ${MODEL} -progress-interval 0
    memory: {ram: 6GiB}
`)
	cut := make(chan response, 1)
	go func() { cut <- s.postJSONQuiet("/v1/chat/completions", `{"model":"chat-a","messages":[]}`) }()
	if !mocktest.Eventually(10*time.Second, func() bool { return s.status("chat-a").InFlight == 1 }) {
		t.Fatal("the long request never reached chat-a")
	}
	if r := s.chat("chat-b", "hi"); r.status != 200 {
		t.Fatalf("chat-b: %d %s", r.status, r.body)
	}
	r := <-cut
	if msg, _, code := r.apiError(t); r.status != 503 || code != "drain_timeout" || !strings.Contains(msg, "drain timeout") {
		t.Errorf("the cut request got %d %s", r.status, r.body)
	}
}
