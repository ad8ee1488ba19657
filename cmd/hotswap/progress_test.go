package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// progressConfig: load progress on for every model (as reasoning) but
// those that set their own; slow has one slot, busy for 1.5s a request.
const progressConfig = `
scheduling: {stream_keepalive: 500ms, load_progress: reasoning}
models:
  m:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 3s -tokens 3 -stream-interval 1ms -progress-interval 0
    aliases: [m-alias]
  shown:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 1s -tokens 3 -stream-interval 1ms -progress-interval 0
    load_progress: content
  quiet:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 1s -tokens 3 -stream-interval 1ms -progress-interval 0
    load_progress: off
  slow:
    cmd: MOCK -port ${PORT} -model ${MODEL} -tokens 15 -stream-interval 100ms -progress-interval 0
`

// progressStream is a streamed chat completion as read from hotswap:
// its own chunks (ids of its own) while the request waited, then the
// backend's.
type progressStream struct {
	progress, answer []progressChunk
	comments         int
	done             bool
	raw              string
}

type progressChunk struct{ model, role, reasoning, content string }

// said is the chunks' reasoning and content, each in order.
func said(cs []progressChunk) (reasoning, content string) {
	for _, c := range cs {
		reasoning += c.reasoning
		content += c.content
	}
	return reasoning, content
}

// progressLines are the lines of text, blank ones left out.
func progressLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// streamChat posts a streamed chat for model and reads it to its end.
func streamChat(c client, model string) progressStream {
	t := c.t
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, model)
	resp, err := http.Post(c.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream %s: %d %s", model, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var s progressStream
	var raw strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		raw.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), ":") {
			s.comments++
			continue
		}
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			s.done = true
			continue
		}
		var ev struct {
			ID, Model string
			Choices   []struct {
				Delta struct {
					Role      string `json:"role"`
					Content   string `json:"content"`
					Reasoning string `json:"reasoning_content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil || len(ev.Choices) == 0 {
			t.Fatalf("event %q: %v", data, err)
		}
		d := ev.Choices[0].Delta
		ch := progressChunk{model: ev.Model, role: d.Role, reasoning: d.Reasoning, content: d.Content}
		if strings.HasPrefix(ev.ID, "chatcmpl-hotswap-") {
			if len(s.answer) > 0 {
				t.Fatalf("a progress chunk within the answer: %s", data)
			}
			s.progress = append(s.progress, ch)
		} else {
			s.answer = append(s.answer, ch)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	s.raw = raw.String()
	return s
}

// checkAnswer: the backend's answer came whole after the progress.
func checkAnswer(t *testing.T, s progressStream) {
	t.Helper()
	if _, content := said(s.answer); content != "tok0 tok1 tok2 " || !s.done {
		t.Errorf("answer %q (done %v), want three tokens then [DONE]:\n%s", content, s.done, s.raw)
	}
}

// TestLoadProgressStream: a streamed chat that waits for its model's 3s
// load is told so as reasoning, named as the client named the model: a
// line for the load ("first start": no estimate yet), one for its end,
// not one every keep-alive; then the answer. Stopped and loaded again,
// the load is told against the first one's time.
func TestLoadProgressStream(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, progressConfig))
	c := client{t: t, url: url}

	s := streamChat(c, "m-alias")
	checkAnswer(t, s)
	reasoning, content := said(s.progress)
	lines := progressLines(reasoning)
	if content != "" || len(lines) < 2 || len(lines) > 3 {
		t.Fatalf("progress %q, content %q: want the load and its end as reasoning\n%s", lines, content, s.raw)
	}
	if !strings.HasPrefix(lines[0], "loading m") || !strings.HasSuffix(lines[0], "(first start)") ||
		!strings.HasPrefix(lines[len(lines)-1], "m is ready (waited ") {
		t.Errorf("progress %q", lines)
	}
	for i, ch := range s.progress {
		if ch.model != "m-alias" || (i == 0) != (ch.role == "assistant") {
			t.Errorf("progress chunk %d: model %q role %q", i, ch.model, ch.role)
		}
	}

	c.json("POST", "/admin/models/m/unload", "", 200, nil)
	if !mocktest.Eventually(10*time.Second, func() bool { _, ok := c.running()["m"]; return !ok }) {
		t.Fatal("m did not stop")
	}
	s = streamChat(c, "m")
	checkAnswer(t, s)
	reasoning, _ = said(s.progress)
	if lines := progressLines(reasoning); len(lines) < 2 || !strings.HasPrefix(lines[0], "loading m: ") ||
		!(strings.Contains(lines[0], "of about 3 (from the last start)") || strings.Contains(lines[0], "about 3 s (from the last start)")) {
		t.Errorf("second load's progress %q, want it against the first start's 3s", lines)
	}
}

// TestLoadProgressModes: content mode puts the progress in the answer's
// text, set apart by a rule; a model with load_progress off gets comments
// only, an unstreamed request its plain answer; and a request queued
// behind its model's busy slot is told so.
func TestLoadProgressModes(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, progressConfig))
	c := client{t: t, url: url}

	s := streamChat(c, "shown")
	checkAnswer(t, s)
	if reasoning, content := said(s.progress); reasoning != "" ||
		!strings.HasPrefix(content, "loading shown") || !strings.HasSuffix(content, "\n\n---\n\n") {
		t.Errorf("content mode: reasoning %q, content %q", reasoning, content)
	}

	s = streamChat(c, "quiet")
	checkAnswer(t, s)
	if len(s.progress) != 0 || s.comments == 0 {
		t.Errorf("load_progress off: progress %+v, %d comments; want comments only", s.progress, s.comments)
	}

	c.json("POST", "/admin/models/shown/unload", "", 200, nil)
	var plain struct {
		Choices []struct {
			Message map[string]any `json:"message"`
		} `json:"choices"`
	}
	c.json("POST", "/v1/chat/completions", `{"model":"shown","messages":[{"role":"user","content":"hi"}]}`, 200, &plain)
	if len(plain.Choices) != 1 || !strings.HasPrefix(fmt.Sprint(plain.Choices[0].Message["content"]), "tok0 tok1 tok2 |") {
		t.Errorf("unstreamed: %+v", plain)
	}

	// slow's one slot, taken for 1.5s.
	first := make(chan progressStream, 1)
	go func() {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"slow","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			first <- progressStream{raw: err.Error()}
			return
		}
		defer resp.Body.Close()
		var raw strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			raw.WriteString(sc.Text() + "\n")
		}
		first <- progressStream{raw: raw.String()}
	}()
	if !mocktest.Eventually(10*time.Second, func() bool { return c.running()["slow"].InFlight == 1 }) {
		t.Fatal("the first request never reached slow")
	}
	s = streamChat(c, "slow")
	if reasoning, _ := said(s.progress); !strings.HasPrefix(reasoning, "queued for slow: it is busy") {
		t.Errorf("queued progress %q\n%s", reasoning, s.raw)
	}
	if r := <-first; !strings.Contains(r.raw, "data: [DONE]") {
		t.Errorf("the first request: %s", r.raw)
	}
}

// TestLoadProgressSDK: the official OpenAI SDK reads a stream with load
// progress without error: the progress as each delta's reasoning_content,
// the answer alone as its content.
func TestLoadProgressSDK(t *testing.T) {
	dir := sdkDir(t)
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, progressConfig))
	type result struct {
		Model, Reasoning, Content, Error string
		OK                               bool
		Models, Roles                    []string
		Chunks                           int
	}
	got := node[result](t, dir, "progress.mjs", url, "m-alias", "shown")
	if len(got) != 2 {
		t.Fatalf("results %+v", got)
	}
	r := got[0]
	if !r.OK || r.Content != "tok0 tok1 tok2 " || !strings.HasPrefix(r.Reasoning, "loading m") ||
		!strings.Contains(r.Reasoning, "m is ready") || len(r.Roles) == 0 || r.Roles[0] != "assistant" {
		t.Errorf("reasoning mode, as the SDK reads it: %+v", r)
	}
	for _, m := range r.Models {
		if m != "m-alias" {
			t.Errorf("a chunk for %q, want m-alias", m)
			break
		}
	}
	if r := got[1]; !r.OK || r.Reasoning != "" || !strings.HasPrefix(r.Content, "loading shown") ||
		!strings.HasSuffix(r.Content, "---\n\ntok0 tok1 tok2 ") {
		t.Errorf("content mode, as the SDK reads it: %+v", r)
	}
}
