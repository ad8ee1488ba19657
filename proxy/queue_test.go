package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/internal/mocktest"
)

// queueConfig has a one-slot model with a one-place queue, and models that
// load slowly, for the router's answers and waiting streams. The slot is
// taken by the test (see busy), not by a slow backend, so that how long
// it is taken is the test's to say; the queue timeout is met on a fake
// clock (see newStackOn), and is long for the tests on the real one.
const queueConfig = `
ports: 20000-20999
health_timeout: 10s
stop_timeout: 2s
scheduling:
  queue_size: 1
  queue_timeout: 1m
  stream_keepalive: 200ms
models:
  one:
    cmd: MOCK -port ${PORT} -model ${MODEL} -progress-interval 0
    parallel: 1
  cold:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 700ms -progress-interval 0
  doomed:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 500ms -fail-start -progress-interval 0
`

// queueTimeout is queueConfig's.
const queueTimeout = time.Minute

// fakeClock is a fake clock for a stack.
func fakeClock() *clock.Fake { return clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// chatAsync sends a chat request for model and answers on the channel.
func chatAsync(s *stack, model string) <-chan response {
	done := make(chan response, 1)
	go func() {
		b, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "hi"}}})
		resp, err := s.client.Post(s.url+"/v1/chat/completions", "application/json", bytes.NewReader(b))
		if err != nil {
			done <- response{}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- response{status: resp.StatusCode, header: resp.Header, body: body}
	}()
	return done
}

// answer is what chatAsync's request got.
func answer(t *testing.T, c <-chan response) response {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no answer")
		return response{}
	}
}

// busy takes one's only slot through the router, as a request in flight
// would, until release (or the test's end): the test, not a backend's
// latency, says how long the slot is taken.
func busy(t *testing.T, s *stack) (release func()) {
	t.Helper()
	l, err := s.rt.Acquire(context.Background(), "one")
	if err != nil {
		t.Fatal(err)
	}
	release = sync.OnceFunc(l.Release)
	t.Cleanup(release)
	if n := s.modelField("one", "in_flight"); n != 1 {
		t.Fatalf("%v in flight, want the test's own", n)
	}
	return release
}

// modelField reads a number from the model's /v1/models entry.
func (s *stack) modelField(model, field string) float64 {
	resp, err := s.client.Get(s.url + "/v1/models/" + model)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var m map[string]any
	if json.NewDecoder(resp.Body).Decode(&m) != nil {
		return -1
	}
	n, _ := m[field].(float64)
	return n
}

// rawRequest sends a chat request on a connection of its own, which the
// test can close to hang up.
func rawRequest(t *testing.T, s *stack, model string, stream bool) net.Conn {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"model": model, "stream": stream,
		"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // a test that goes wrong ends
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	return conn
}

// queued waits until n requests wait in model's queue.
func queued(t *testing.T, s *stack, model string, n float64) {
	t.Helper()
	if !mocktest.Eventually(10*time.Second, func() bool { return s.modelField(model, "queued") == n }) {
		t.Fatalf("%v queued for %s, want %v", s.modelField(model, "queued"), model, n)
	}
}

// TestQueueFullIs429WithRetryAfter: with the one place in the queue
// taken, the next request is refused at once with 429 and a Retry-After
// in whole seconds; the queued one is served once the slot frees (on the
// fake clock, it cannot have timed out meanwhile, however slow the
// machine).
func TestQueueFullIs429WithRetryAfter(t *testing.T) {
	s := newStackOn(t, queueConfig, fakeClock())
	release := busy(t, s)
	waiting := rawRequest(t, s, "one", false)
	defer waiting.Close()
	queued(t, s, "one", 1)
	r := s.chat("one", "hi")
	if r.status != 429 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if _, typ, code := r.apiError(t); code != "queue_full" || typ != "rate_limit_error" {
		t.Errorf("error %s/%s, want rate_limit_error/queue_full", typ, code)
	}
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After %q, want whole seconds", r.header.Get("Retry-After"))
	}
	release()
	// The queued one is served after it.
	resp, err := http.ReadResponse(bufio.NewReader(waiting), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the queued request: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestQueueTimeoutIs503: a request that waits out queue_timeout, on
// hotswap's clock, is answered 503 queue_timeout; the request holding the
// slot is not disturbed.
func TestQueueTimeoutIs503(t *testing.T) {
	fc := fakeClock()
	s := newStackOn(t, queueConfig, fc)
	busy(t, s)
	waiting := chatAsync(s, "one")
	queued(t, s, "one", 1)
	// Its timeout counts from when it was queued (before the clock
	// moves), whether or not its timer is made yet.
	fc.Advance(queueTimeout)
	r := answer(t, waiting)
	if r.status != 503 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if msg, _, code := r.apiError(t); code != "queue_timeout" || !strings.Contains(msg, "after 1m0s") {
		t.Errorf("error %q (%s), want queue_timeout after 1m0s", msg, code)
	}
	if q, f := s.modelField("one", "queued"), s.modelField("one", "in_flight"); q != 0 || f != 1 {
		t.Errorf("%v queued, %v in flight after the timeout: want the holder alone", q, f)
	}
}

// A client that hangs up while queued gives its place up at once, not when
// its turn comes or its wait times out.
func TestHungUpClientLeavesTheQueue(t *testing.T) {
	fc := fakeClock()
	s := newStackOn(t, queueConfig, fc)
	release := busy(t, s)
	gone := rawRequest(t, s, "one", false)
	queued(t, s, "one", 1)
	gone.Close()
	// The proxy watches for a hang-up once a request has waited longer
	// than the fast path (a millisecond): the clock moves a millisecond
	// at a time, so the queue timeout (a minute) is not reached.
	if !mocktest.Eventually(5*time.Second, func() bool {
		fc.Advance(time.Millisecond)
		return s.modelField("one", "queued") == 0
	}) {
		t.Fatal("the hung-up request still holds its place")
	}
	// Its place is free for the next one, which is served in turn.
	next := chatAsync(s, "one")
	queued(t, s, "one", 1)
	release()
	if got := answer(t, next); got.status != 200 {
		t.Errorf("the request after the hang-up: %d %s, want it queued and answered", got.status, got.body)
	}
}

// events reads an event stream's lines until it ends.
func events(t *testing.T, r io.Reader) (comments, data []string) {
	t.Helper()
	return scanEvents(t, bufio.NewScanner(r))
}

// scanEvents is events, from a scanner a test has begun reading.
func scanEvents(t *testing.T, sc *bufio.Scanner) (comments, data []string) {
	t.Helper()
	for sc.Scan() {
		switch line := sc.Text(); {
		case strings.HasPrefix(line, ":"):
			comments = append(comments, line)
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	return comments, data
}

func postStream(t *testing.T, s *stack, path string, body map[string]any) *http.Response {
	t.Helper()
	body["stream"] = true
	b, _ := json.Marshal(body)
	resp, err := http.Post(s.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// A streaming request for a model that is loading gets comment lines
// saying so until the backend's events begin.
func TestWaitingStreamGetsKeepalives(t *testing.T) {
	s := newStack(t, queueConfig)
	resp := postStream(t, s, "/v1/chat/completions", map[string]any{"model": "cold",
		"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	comments, data := events(t, resp.Body)
	if len(comments) < 2 {
		t.Fatalf("%d comments during a 700ms load at 200ms intervals: %q", len(comments), comments)
	}
	for _, c := range comments {
		if !strings.HasPrefix(c, ": waiting for cold: loading, ") || !strings.HasSuffix(c, "s") {
			t.Errorf("comment %q", c)
		}
	}
	if len(data) < 2 || data[len(data)-1] != "[DONE]" || !strings.Contains(data[0], "chat.completion.chunk") {
		t.Errorf("the backend's events did not follow: %q", data)
	}
}

// A streaming request that waits in a queue is told so, for as long as it
// waits, and gets the backend's events once its turn comes.
func TestQueuedStreamSaysQueued(t *testing.T) {
	s := newStack(t, queueConfig)
	release := busy(t, s)
	resp := postStream(t, s, "/v1/chat/completions", map[string]any{"model": "one",
		"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	sc := bufio.NewScanner(resp.Body)
	for range 2 {
		if !sc.Scan() {
			t.Fatalf("the stream ended while queued: %v", sc.Err())
		}
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, ": waiting for one: queued, ") {
			t.Fatalf("line %q, want a comment saying it is queued", line)
		}
	}
	release()
	comments, data := scanEvents(t, sc)
	for _, c := range comments {
		if !strings.HasPrefix(c, ": waiting for one: queued, ") {
			t.Errorf("comment %q", c)
		}
	}
	if len(data) == 0 || data[len(data)-1] != "[DONE]" {
		t.Errorf("events %q", data)
	}
}

// Once the stream is open, a failure to start is an error event, the way
// OpenAI streams report errors, and the stream ends.
func TestWaitingStreamGetsErrorEvent(t *testing.T) {
	s := newStack(t, queueConfig)
	resp := postStream(t, s, "/v1/chat/completions", map[string]any{"model": "doomed",
		"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	comments, data := events(t, resp.Body)
	if resp.StatusCode != 200 || len(comments) == 0 {
		t.Fatalf("status %d with %d comments: want an open stream", resp.StatusCode, len(comments))
	}
	if len(data) != 1 {
		t.Fatalf("events %q, want one error event", data)
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(data[0]), &e); err != nil || e.Error.Code != "backend_start_failed" {
		t.Errorf("event %s, want an OpenAI error with code backend_start_failed", data[0])
	}
}

// The backend's own refusal, after the stream has opened, reaches the
// client as an error event carrying the backend's error.
func TestWaitingStreamGetsBackendRefusal(t *testing.T) {
	s := newStack(t, queueConfig)
	resp := postStream(t, s, "/v1/audio/speech", map[string]any{"model": "cold"})
	_, data := events(t, resp.Body)
	if len(data) != 1 || !strings.Contains(data[0], `"missing_input"`) {
		t.Errorf("events %q, want the backend's missing_input error", data)
	}
}

// mixedConfig is four models of which memory holds two at a time.
const mixedConfig = `
ports: 20000-20999
health_timeout: 10s
stop_timeout: 2s
scheduling:
  max_wait: 300ms
  queue_size: 512
  queue_timeout: 2m
  stream_keepalive: 100ms
models:
  chat-a:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 50ms -latency 5ms -stream-interval 2ms -progress-interval 0
    parallel: 4
    memory: {ram: 6GiB}
  chat-b:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 50ms -latency 5ms -stream-interval 2ms -progress-interval 0
    parallel: 2
    memory: {ram: 6GiB}
  embed:
    cmd: MOCK -port ${PORT} -model ${MODEL} -progress-interval 0
    parallel: 8
    memory: {ram: 3GiB}
  slow:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 50ms -latency 20ms -progress-interval 0
    parallel: 1
    memory: {ram: 3GiB}
  crashy:
    cmd: MOCK -port ${PORT} -model ${MODEL} -crash-after 4 -stream-interval 2ms -progress-interval 0
    parallel: 2
`

// Five hundred requests over four models that do not all fit, and one
// whose backend crashes on every fourth request, streaming and not, from
// many clients at once: every one gets exactly one whole answer, from the
// model it asked for, or (from the crashing one) an OpenAI error.
func TestFiveHundredMixedRequestsAllAnswered(t *testing.T) {
	s := newStack(t, mixedConfig)
	const clients, total = 16, 500
	models := []string{"chat-a", "chat-b", "embed", "slow", "crashy"}
	var mu sync.Mutex
	var failures []string
	answered, crashes := 0, 0
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for i := c; i < total; i += clients {
				model := models[rng.IntN(len(models))]
				stream := model != "embed" && rng.IntN(2) == 0
				crashed, err := mixedRequest(s.url, model, stream)
				mu.Lock()
				answered++
				if crashed {
					crashes++
				}
				if err != nil {
					failures = append(failures, fmt.Sprintf("request %d (%s, stream %v): %v", i, model, stream, err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if answered != total || len(failures) > 0 {
		t.Fatalf("%d of %d answered, %d wrong; first: %v", answered, total, len(failures), failures)
	}
	for _, m := range models {
		if q, f := s.modelField(m, "queued"), s.modelField(m, "in_flight"); q != 0 || f != 0 {
			t.Errorf("%s: %v queued, %v in flight after every answer", m, q, f)
		}
	}
	if crashes == 0 {
		t.Error("no request met a crash: the workload does not test crashes")
	}
	t.Logf("%d requests answered, %d of them with a crash's error, %d backend starts", total, crashes, s.starts.Starts())
}

// mixedRequest sends one request and checks that its answer is whole and
// comes from model, or is the error of a crash.
func mixedRequest(base, model string, stream bool) (crashed bool, err error) {
	path := "/v1/chat/completions"
	body := map[string]any{"model": model, "stream": stream,
		"messages": []map[string]string{{"role": "user", "content": "hi"}}}
	if model == "embed" {
		path, body = "/v1/embeddings", map[string]any{"model": model, "input": "hi"}
	}
	b, _ := json.Marshal(body)
	resp, err := http.Post(base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	if model == "crashy" && isOpenAIError(resp.StatusCode, got, stream) {
		return true, nil
	}
	if resp.StatusCode != 200 {
		return false, fmt.Errorf("status %d: %s", resp.StatusCode, got)
	}
	if stream {
		if !bytes.HasSuffix(bytes.TrimSpace(got), []byte("data: [DONE]")) || !bytes.Contains(got, []byte(`"model":"`+model+`"`)) {
			return false, fmt.Errorf("incomplete stream: %q", got)
		}
		return false, nil
	}
	if m := resp.Header.Get("X-Mock-Model"); m != model {
		return false, fmt.Errorf("answered by %q", m)
	}
	return false, nil
}

// A client that hangs up on a waiting stream gives up its wait: the
// request never reaches the backend once it has loaded.
func TestHungUpWaitingStreamIsNotForwarded(t *testing.T) {
	s := newStack(t, queueConfig)
	conn := rawRequest(t, s, "cold", true)
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no keepalive before the hang-up: %v", err)
		}
		if strings.HasPrefix(line, ": waiting for cold") {
			break
		}
	}
	conn.Close()
	if !mocktest.Eventually(5*time.Second, func() bool {
		return s.status("cold").State.String() == "ready" && s.modelField("cold", "in_flight") == 0
	}) {
		t.Fatal("the hung-up stream still holds its slot after the load")
	}
	resp, err := http.Get(s.status("cold").Upstream + "/mock/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct{ Requests int }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Requests != 0 {
		t.Errorf("the backend got %d requests (%v) from a client that had left", st.Requests, err)
	}
}

// isOpenAIError: a crashed backend's answer, as an error status with an
// OpenAI error body or as a stream that ends in one error event.
func isOpenAIError(status int, body []byte, stream bool) bool {
	var e struct {
		Error *struct{ Code string } `json:"error"`
	}
	if status >= 500 {
		return json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Code != ""
	}
	if !stream || status != 200 {
		return false
	}
	events := strings.Split(strings.TrimSpace(string(body)), "\n\n")
	last := strings.TrimPrefix(events[len(events)-1], "data: ")
	return json.Unmarshal([]byte(last), &e) == nil && e.Error != nil && e.Error.Code == "backend_died"
}
