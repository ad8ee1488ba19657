package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/gguf"
	"github.com/hotswap/hotswap/internal/mocktest"
)

// llamaServerEnv names a llama-server binary for TestRealLlamaServer,
// which is skipped without it:
//
//	HOTSWAP_LLAMA_SERVER=/path/to/llama-server make test-real
const llamaServerEnv = "HOTSWAP_LLAMA_SERVER"

// bigPort is where the big model's llama-server listens: fixed, so that
// the test can watch hotswap's connections to it.
const bigPort = 26500

// TestRealLlamaServer runs hotswap in front of a real llama-server, with
// two tiny models it generates (nothing is downloaded), and checks what
// users of llama-server hit: chat and streams, a chat right after a
// stream (llama-server closes the connection after every stream), a chat
// after the backend dropped an idle connection, the Responses and
// Anthropic APIs, llama.cpp's own paths, a swap forced by limit_ram, the
// learned footprint, a bad flag that must not stop other models, and a
// shutdown that leaves no llama-server behind.
func TestRealLlamaServer(t *testing.T) {
	bin := os.Getenv(llamaServerEnv)
	if bin == "" {
		t.Skipf("set %s to a llama-server binary to run this test (see README)", llamaServerEnv)
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	b := build(t)
	dir := t.TempDir()
	for _, m := range []struct {
		name string
		mib  int64
	}{{"small", 20}, {"big", 40}} {
		o := gguf.Options{Name: m.name, Seed: uint64(m.mib)}.WithWeightBytes(m.mib << 20)
		if err := gguf.WriteTinyLlama(filepath.Join(dir, m.name+".gguf"), o); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "footprints.json")
	// Declared 60 and 80 MiB under a 100 MiB limit: the two never fit
	// together, so asking for one stops the other.
	cfg := fmt.Sprintf(`
ports: 26000-26099
stop_timeout: 5s
memory:
  limit_ram: 100MiB
  state_file: %[1]s
models:
  small:
    cmd: %[2]s -m %[3]s/small.gguf --host 127.0.0.1 --port ${PORT} --alias ${MODEL} -c 256 -ngl 0 -t 1
    memory: {ram: 60MiB}
  big:
    cmd: %[2]s -m %[3]s/big.gguf --host 127.0.0.1 --port %[4]d --alias ${MODEL} -c 256 -ngl 0 -t 1
    proxy: http://127.0.0.1:%[4]d
    memory: {ram: 80MiB}
    # Kept past llama-server's own 5s, to see hotswap cope when the
    # backend drops an idle connection first.
    upstream_keepalive: 1m
  # Declared small: undeclared, it would be planned from its file's
  # estimate (about 50 MiB) and stop big to make room.
  broken:
    cmd: %[2]s -m %[3]s/small.gguf --port ${PORT} --no-such-flag
    memory: {ram: 10MiB}
`, state, bin, dir, bigPort)
	// Registered first, so run last: after hotswap is gone.
	t.Cleanup(func() {
		if left := mocktest.Leftovers(bin, 10*time.Second); len(left) > 0 {
			t.Errorf("llama-server left running: %v", left)
		}
	})
	cmd, url, logs := startLogged(t, b, writeConfig(t, b, cfg))
	c := &realClient{t: t, url: url, http: &http.Client{Timeout: 2 * time.Minute}}

	// Chat, and a stream followed by a chat, again and again: each chat
	// comes after llama-server closed the stream's connection.
	if got := c.chat("small"); got.model != "small" || got.content == "" {
		t.Errorf("chat: %+v", got)
	}
	for i := range 5 {
		events := c.stream("/v1/chat/completions", `{"model":"small","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
		if last := events[len(events)-1]; last.data != "[DONE]" {
			t.Errorf("round %d: stream ended with %q", i, last.data)
		}
		c.chat("small")
	}

	// The Responses API and the Anthropic Messages API, plain and streamed.
	r := c.post("/v1/responses", `{"model":"small","input":"hi","max_output_tokens":4}`)
	if r["object"] != "response" || r["status"] != "completed" {
		t.Errorf("/v1/responses: %v", r)
	}
	ev := c.stream("/v1/responses", `{"model":"small","input":"hi","max_output_tokens":4,"stream":true}`)
	if last := ev[len(ev)-1]; last.name != "response.completed" {
		t.Errorf("/v1/responses stream ended with %+v", last)
	}
	m := c.post("/v1/messages", `{"model":"small","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	if m["type"] != "message" || m["role"] != "assistant" {
		t.Errorf("/v1/messages: %v", m)
	}
	ev = c.stream("/v1/messages", `{"model":"small","max_tokens":4,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if last := ev[len(ev)-1]; last.name != "message_stop" {
		t.Errorf("/v1/messages stream ended with %+v", last)
	}
	if n := c.post("/v1/messages/count_tokens", `{"model":"small","messages":[{"role":"user","content":"hi"}]}`); n["input_tokens"] == nil {
		t.Errorf("count_tokens: %v", n)
	}
	// llama.cpp's own paths.
	if tok := c.post("/tokenize", `{"model":"small","content":"hello world"}`); tok["tokens"] == nil {
		t.Errorf("/tokenize: %v", tok)
	}
	if props := c.get("/props?model=small"); props["model_alias"] != "small" {
		t.Errorf("/props: %v", props["model_alias"])
	}
	// llama-server's own /slots, through the passthrough.
	resp, body := c.do("GET", "/upstream/small/slots", "")
	var slots []map[string]any
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &slots) != nil || len(slots) == 0 {
		t.Errorf("/upstream/small/slots: %d %s", resp.StatusCode, body)
	}
	smallPid := c.model("small").Pid

	// big does not fit beside small: small is stopped.
	c.chat("big")
	if st := c.model("small"); st.State != "stopped" || mocktest.Alive(smallPid) {
		t.Errorf("after big: small is %q (pid %d alive %v)", st.State, smallPid, mocktest.Alive(smallPid))
	}
	if st := c.model("big"); st.State != "ready" {
		t.Errorf("big is %q", st.State)
	}

	// llama-server drops an idle connection after 5s; big's is kept for a
	// minute. Once the drop is seen, the next request still gets a 200.
	if !mocktest.Eventually(20*time.Second, func() bool { return closeWaitTo(t, bigPort) }) {
		t.Error("llama-server never dropped hotswap's idle connection")
	}
	c.chat("big")

	// A bad flag is the backend's own failure: the error says so, and big
	// is not stopped for it.
	resp, body = c.do("POST", "/v1/chat/completions", `{"model":"broken","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 503 || !strings.Contains(body, "no-such-flag") || !strings.Contains(body, "backend_start_failed") {
		t.Errorf("broken: %d %s", resp.StatusCode, body)
	}
	if st := c.model("big"); st.State != "ready" {
		t.Errorf("big is %q after a bad flag", st.State)
	}
	if strings.Contains(logs.String(), "retrying once") {
		t.Error("a bad flag was taken for a lack of memory")
	}

	// Both were measured, and the figures kept (by model and a
	// fingerprint of its command: "small@1a2b...").
	var fp struct {
		Footprints map[string]struct{ RAM int64 } `json:"footprints"`
	}
	learned := func(model string) int64 {
		for key, f := range fp.Footprints {
			if strings.HasPrefix(key, model+"@") {
				return f.RAM
			}
		}
		return 0
	}
	if !mocktest.Eventually(30*time.Second, func() bool {
		raw, err := os.ReadFile(state)
		return err == nil && json.Unmarshal(raw, &fp) == nil && learned("small") > 0 && learned("big") > 0
	}) {
		t.Fatalf("footprints not learned: %+v", fp)
	}
	t.Logf("learned footprints: small %d MiB, big %d MiB", learned("small")>>20, learned("big")>>20)
	if st := c.model("big"); st.Usage == nil || st.Usage.RAM < 10<<20 || st.Usage.RAM > 80<<20 {
		t.Errorf("big's measured use: %+v", st.Usage)
	} else if learned("big") < st.Usage.RAM*9/10 {
		t.Errorf("big's footprint %d is well below its measured use %d", learned("big"), st.Usage.RAM)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("hotswap exit: %v", err)
	}
	if pids := mocktest.Pids(bin); len(pids) > 0 {
		t.Errorf("llama-server still running after hotswap stopped: %v", pids)
	}
}

// realClient makes requests to hotswap and fails the test on any answer
// but 200.
type realClient struct {
	t    testing.TB
	url  string
	http *http.Client
}

func (c *realClient) do(method, path, body string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, string(b)
}

func (c *realClient) decode(method, path, body string) map[string]any {
	c.t.Helper()
	resp, b := c.do(method, path, body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(b), &v); err != nil {
		c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
	}
	return v
}

func (c *realClient) post(path, body string) map[string]any { return c.decode("POST", path, body) }
func (c *realClient) get(path string) map[string]any        { return c.decode("GET", path, "") }

type chatAnswer struct{ model, content string }

func (c *realClient) chat(model string) chatAnswer {
	c.t.Helper()
	v := c.post("/v1/chat/completions", `{"model":"`+model+`","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	var a chatAnswer
	a.model, _ = v["model"].(string)
	if ch, _ := v["choices"].([]any); len(ch) > 0 {
		msg, _ := ch[0].(map[string]any)["message"].(map[string]any)
		a.content, _ = msg["content"].(string)
	}
	return a
}

type sseEvent struct{ name, data string }

// stream posts a streaming request and reads its events to the end, which
// must be clean.
func (c *realClient) stream(path, body string) []sseEvent {
	c.t.Helper()
	resp, err := c.http.Post(c.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		c.t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	var events []sseEvent
	var name string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "event: "); ok {
			name = n
		} else if d, ok := strings.CutPrefix(line, "data: "); ok {
			if strings.Contains(d, `"error"`) && !strings.Contains(d, `"type"`) {
				c.t.Errorf("%s: error event %s", path, d)
			}
			events = append(events, sseEvent{name, d})
			name = ""
		}
	}
	if err := sc.Err(); err != nil || len(events) == 0 {
		c.t.Fatalf("%s: stream cut after %d events: %v", path, len(events), err)
	}
	return events
}

type modelEntry struct {
	State string `json:"state"`
	Pid   int    `json:"pid"`
	Usage *struct {
		RAM int64 `json:"ram"`
	} `json:"usage"`
}

func (c *realClient) model(id string) modelEntry {
	c.t.Helper()
	_, b := c.do("GET", "/v1/models/"+id, "")
	var m modelEntry
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		c.t.Fatalf("/v1/models/%s: %v: %s", id, err, b)
	}
	return m
}

// closeWaitTo reports whether some connection on this machine to
// 127.0.0.1:port is in CLOSE_WAIT: its peer (the server on port) closed
// it, and the client (hotswap) has not yet.
func closeWaitTo(t *testing.T, port int) bool {
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st ...; CLOSE_WAIT is 08.
		if len(f) > 3 && strings.HasSuffix(f[2], want) && f[3] == "08" {
			return true
		}
	}
	return false
}
