package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/proxy"
)

// progressConfig's cold loads for a second; chat-a and chat-b cannot be
// loaded together (see newStack's scripted memory). Waiting streams are
// sent something every 200ms.
const progressConfig = `
ports: 20000-20999
scheduling: {stream_keepalive: 200ms, load_progress: reasoning}
models:
  cold:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 1s -stream-interval 1ms -tokens 3 -progress-interval 0
    aliases: [cold-alias]
  cold-content:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 1s -stream-interval 1ms -tokens 3 -progress-interval 0
    load_progress: content
  cold-off:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 1s -stream-interval 1ms -tokens 3 -progress-interval 0
    load_progress: off
  renamed:
    cmd: MOCK -port ${PORT} -model ${MODEL} -served-model-name served-renamed -startup 1s -stream-interval 1ms -tokens 3 -progress-interval 0
    upstream_model: served-renamed
  slow:
    cmd: MOCK -port ${PORT} -model ${MODEL} -stream-interval 100ms -tokens 15 -progress-interval 0
  chat-a:
    cmd: MOCK -port ${PORT} -model ${MODEL} -tokens 3 -progress-interval 0
    memory: {ram: 6GiB}
  chat-b:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 500ms -stream-interval 1ms -tokens 3 -progress-interval 0
    memory: {ram: 6GiB}
`

// newProgressStack is newStack with an events hub, which says what was
// evicted and why, and the proxy itself, to reload.
func newProgressStack(t *testing.T, cfgText string) (*stack, *proxy.Server) {
	t.Helper()
	return newStackWith(t, cfgText, stackOptions{events: true})
}

// waited is a streamed answer as the client reads it: the progress
// hotswap sent while the request waited, then the backend's answer.
type waited struct {
	comments []string // SSE comment lines
	progress []chunk  // hotswap's own chunks, in order
	answer   []chunk  // the backend's chunks
	done     bool     // [DONE] came last
	raw      string
}

// chunk is one chat.completion.chunk event's parts a chat window reads.
type chunk struct {
	id, model, role, content, reasoning string
}

// text is every chunk's reasoning and content, in order.
func text(cs []chunk) (reasoning, content string) {
	for _, c := range cs {
		reasoning += c.reasoning
		content += c.content
	}
	return reasoning, content
}

// streamTo posts a streamed request body to path and reads the answer to
// its end, telling hotswap's chunks (their ids are its own) from the
// backend's.
func streamTo(t *testing.T, s *stack, path, body string) waited {
	t.Helper()
	resp, err := s.client.Post(s.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %s: %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var w waited
	var raw strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		raw.WriteString(line + "\n")
		if c, ok := strings.CutPrefix(line, ":"); ok {
			w.comments = append(w.comments, strings.TrimSpace(c))
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if w.done {
			t.Fatalf("an event after [DONE]: %s", data)
		}
		if data == "[DONE]" {
			w.done = true
			continue
		}
		var ev struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Model   string `json:"model"`
			Choices []struct {
				Index int `json:"index"`
				Delta struct {
					Role      string `json:"role"`
					Content   string `json:"content"`
					Reasoning string `json:"reasoning_content"`
				} `json:"delta"`
				Text string `json:"text"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		c := chunk{id: ev.ID, model: ev.Model}
		if len(ev.Choices) > 0 {
			d := ev.Choices[0].Delta
			c.role, c.content, c.reasoning = d.Role, d.Content+ev.Choices[0].Text, d.Reasoning
		}
		if strings.HasPrefix(ev.ID, "chatcmpl-hotswap-") {
			if len(w.answer) > 0 {
				t.Fatalf("hotswap's chunk after the backend's: %s", data)
			}
			if ev.Object != "chat.completion.chunk" || len(ev.Choices) != 1 || ev.Choices[0].Index != 0 {
				t.Fatalf("not a chat chunk: %s", data)
			}
			w.progress = append(w.progress, c)
		} else {
			w.answer = append(w.answer, c)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	w.raw = raw.String()
	return w
}

func chatBody(model string, stream bool) string {
	return fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"hi"}]}`, model, stream)
}

// lines are the progress's lines, blank lines (paragraph breaks) left out.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// checkProgress checks what every progress has: the role on the first
// chunk only, the client's name for the model, the answer after it, and
// no line said twice in a row.
func checkProgress(t *testing.T, w waited, name string) {
	t.Helper()
	if len(w.progress) == 0 {
		t.Fatalf("no progress chunks:\n%s", w.raw)
	}
	for i, c := range w.progress {
		if (i == 0) != (c.role == "assistant") {
			t.Errorf("progress chunk %d has role %q", i, c.role)
		}
		if c.model != name {
			t.Errorf("progress chunk %d names model %q, want %q", i, c.model, name)
		}
		if c.id != w.progress[0].id {
			t.Errorf("progress chunk %d has id %q, the first %q", i, c.id, w.progress[0].id)
		}
	}
	if _, content := text(w.answer); content != "tok0 tok1 tok2 " || !w.done {
		t.Errorf("answer %q (done %v), want the backend's three tokens then [DONE]:\n%s", content, w.done, w.raw)
	}
	for i, c := range w.progress[1:] {
		if c.reasoning+c.content == w.progress[i].reasoning+w.progress[i].content {
			t.Errorf("progress chunk %d repeats the one before: %q", i+1, c.reasoning+c.content)
		}
	}
}

// TestLoadProgressReasoning: a streamed chat that waits for its model's
// load is told so as reasoning: the load's first start, then, once the
// model was stopped and is loaded again, against the first start's time.
// A line is said when it changes, not on every keep-alive.
func TestLoadProgressReasoning(t *testing.T) {
	s, _ := newProgressStack(t, progressConfig)

	w := streamTo(t, s, "/v1/chat/completions", chatBody("cold-alias", true))
	checkProgress(t, w, "cold-alias")
	reasoning, content := text(w.progress)
	if content != "" {
		t.Errorf("progress content %q in reasoning mode", content)
	}
	got := lines(reasoning)
	// A second's load, told every 200ms: the load, then its end. A line
	// on every tick would be five or more.
	if len(got) < 2 || len(got) > 3 {
		t.Fatalf("progress lines %q, want the load and its end", got)
	}
	if !strings.HasPrefix(got[0], "loading cold") || !strings.HasSuffix(got[0], " (first start)") {
		t.Errorf("first line %q, want the first start's load", got[0])
	}
	if !strings.HasPrefix(got[len(got)-1], "cold is ready (waited ") {
		t.Errorf("last line %q, want the model ready", got[len(got)-1])
	}
	// Paragraphs, so that markdown shows one line each.
	if !strings.HasSuffix(reasoning, "\n\n") || strings.Contains(reasoning, "\n\n\n") {
		t.Errorf("progress %q: want each line a paragraph", reasoning)
	}

	took := s.status("cold").StartTook
	if took <= 0 {
		t.Fatalf("no start time measured: %v", took)
	}
	if err := s.rt.Unload(context.Background(), "cold", false); err != nil {
		t.Fatal(err)
	}
	w = streamTo(t, s, "/v1/chat/completions", chatBody("cold", true))
	checkProgress(t, w, "cold")
	reasoning, _ = text(w.progress)
	about := max(1, int(math.Round(took.Seconds())))
	want := regexp.MustCompile(fmt.Sprintf(`^loading cold: (about %d s|\d+ s of about %d) \(from the last start\)$`, about, about))
	if first := lines(reasoning)[0]; !want.MatchString(first) {
		t.Errorf("second load's first line %q, want it to match %s", first, want)
	}
}

// TestLoadProgressContent: in content mode the progress is the answer's
// text, set apart from the answer by a rule; a renamed model's progress
// names it as the client did, like its answer.
func TestLoadProgressContent(t *testing.T) {
	s, _ := newProgressStack(t, progressConfig)
	w := streamTo(t, s, "/v1/chat/completions", chatBody("cold-content", true))
	checkProgress(t, w, "cold-content")
	reasoning, content := text(w.progress)
	if reasoning != "" {
		t.Errorf("progress reasoning %q in content mode", reasoning)
	}
	if !strings.HasPrefix(content, "loading cold-content") || !strings.HasSuffix(content, " s)\n\n---\n\n") {
		t.Errorf("progress %q: want the load, then a rule and a blank line", content)
	}

	w = streamTo(t, s, "/v1/chat/completions", chatBody("renamed", true))
	checkProgress(t, w, "renamed")
	for _, c := range w.answer {
		if c.model != "renamed" {
			t.Errorf("answer chunk names %q, want the client's name", c.model)
		}
	}
}

// TestLoadProgressOff: with load_progress off (the model's own, over the
// file's), a waiting stream gets comments only, as before; an unstreamed
// request a plain answer; and text completions comments only, whatever
// the setting.
func TestLoadProgressOff(t *testing.T) {
	s, _ := newProgressStack(t, progressConfig)
	w := streamTo(t, s, "/v1/chat/completions", chatBody("cold-off", true))
	if len(w.progress) != 0 {
		t.Errorf("progress with load_progress off: %+v", w.progress)
	}
	if len(w.comments) == 0 || !strings.HasPrefix(w.comments[0], "waiting for cold-off: ") {
		t.Errorf("comments %q, want the waiting ones", w.comments)
	}
	if _, content := text(w.answer); content != "tok0 tok1 tok2 " || !w.done {
		t.Errorf("answer %q done %v:\n%s", content, w.done, w.raw)
	}

	w = streamTo(t, s, "/v1/completions", `{"model":"cold","stream":true,"prompt":"hi"}`)
	if len(w.progress) != 0 || len(w.comments) == 0 {
		t.Errorf("text completion: progress %+v, comments %q; want comments only", w.progress, w.comments)
	}
	if _, content := text(w.answer); content != "tok0 tok1 tok2 " || !w.done {
		t.Errorf("text completion %q done %v:\n%s", content, w.done, w.raw)
	}

	if err := s.rt.Unload(context.Background(), "cold", false); err != nil {
		t.Fatal(err)
	}
	r := s.do("POST", "/v1/chat/completions", "application/json", []byte(chatBody("cold", false)))
	v := r.json(t)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("unstreamed: %d %s", r.status, r.body)
	}
	msg := v["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
	if c := msg["content"].(string); !strings.HasPrefix(c, "tok0 tok1 tok2 |") || msg["reasoning_content"] != nil {
		t.Errorf("unstreamed answer %v, want the backend's alone", msg)
	}
}

// TestLoadProgressReload: a reload that turns load progress on applies
// to the next request.
func TestLoadProgressReload(t *testing.T) {
	s, px := newProgressStack(t, progressConfig)
	w := streamTo(t, s, "/v1/chat/completions", chatBody("cold-off", true))
	if len(w.progress) != 0 {
		t.Fatalf("progress with load_progress off: %+v", w.progress)
	}
	next, err := config.Parse([]byte(strings.ReplaceAll(strings.Replace(progressConfig,
		"load_progress: off", "load_progress: content", 1), "MOCK", mockExe)))
	if err != nil {
		t.Fatal(err)
	}
	px.Reconfigure(next)
	if err := s.rt.Unload(context.Background(), "cold-off", false); err != nil {
		t.Fatal(err)
	}
	w = streamTo(t, s, "/v1/chat/completions", chatBody("cold-off", true))
	checkProgress(t, w, "cold-off")
	if _, content := text(w.progress); !strings.HasPrefix(content, "loading cold-off") {
		t.Errorf("progress after the reload %q, want the load as content", content)
	}
}

// TestLoadProgressQueued: a request queued behind its model's busy slot
// is told so, then that it is answered.
func TestLoadProgressQueued(t *testing.T) {
	s, _ := newProgressStack(t, progressConfig)
	// The first takes slow's one slot for 1.5s of tokens.
	first := make(chan waited, 1)
	go func() {
		resp, err := s.client.Post(s.url+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("slow", true)))
		if err != nil {
			first <- waited{raw: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		first <- waited{raw: string(b)}
	}()
	if !mocktest.Eventually(10*time.Second, func() bool { st, _ := s.sw.Status("slow"); return st.InFlight > 0 }) {
		t.Fatal("the first request never reached slow")
	}
	w := streamTo(t, s, "/v1/chat/completions", chatBody("slow", true))
	if len(w.progress) == 0 {
		t.Fatalf("no progress:\n%s", w.raw)
	}
	got := lines(w.progress[0].reasoning)
	if len(got) == 0 || got[0] != "queued for slow: it is busy with other requests" {
		t.Errorf("first progress %q, want the queue", got)
	}
	reasoning, _ := text(w.progress)
	if all := lines(reasoning); !strings.HasPrefix(all[len(all)-1], "slow is answering (waited ") {
		t.Errorf("last progress line %q", all[len(all)-1])
	}
	if r := <-first; !strings.Contains(r.raw, "[DONE]") {
		t.Errorf("the first request: %s", r.raw)
	}
}

// TestLoadProgressEviction: a request whose model makes room is told what
// is unloaded and why.
func TestLoadProgressEviction(t *testing.T) {
	s, _ := newProgressStack(t, progressConfig)
	if r := s.chat("chat-a", "hi"); r.status != 200 {
		t.Fatalf("chat-a: %d %s", r.status, r.body)
	}
	w := streamTo(t, s, "/v1/chat/completions", chatBody("chat-b", true))
	checkProgress(t, w, "chat-b")
	reasoning, _ := text(w.progress)
	if !strings.Contains(reasoning, "unloading chat-a: making room for chat-b\n") {
		t.Errorf("progress %q, want chat-a's eviction", reasoning)
	}
	if got := lines(reasoning); strings.Count(reasoning, "unloading chat-a") != 1 || !strings.HasPrefix(got[len(got)-1], "chat-b is ready") {
		t.Errorf("progress lines %q", got)
	}
}
