package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
)

// namedEvent is one server-sent event with its "event:" name.
type namedEvent struct {
	name string
	data map[string]any
}

// namedEvents splits an event stream into its events, decoding their data.
func namedEvents(t *testing.T, body string) []namedEvent {
	t.Helper()
	var out []namedEvent
	var name string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "event: "); ok {
			name = n
			continue
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			var v map[string]any
			if err := json.Unmarshal([]byte(d), &v); err != nil {
				t.Fatalf("event data %q: %v", d, err)
			}
			out = append(out, namedEvent{name, v})
			name = ""
		}
	}
	return out
}

func decodeJSON(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return v
}

// dig follows keys (strings for objects, ints for arrays) into v.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func TestResponsesAPI(t *testing.T) {
	f := start(t, "-tokens", "3", "-stream-interval", "1ms")
	f.waitReady()
	resp, body := f.postJSON("/v1/responses", `{"model":"m1","input":[{"role":"user","content":"hi there"}],"max_output_tokens":2}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	v := decodeJSON(t, body)
	if v["object"] != "response" || v["status"] != "completed" || v["model"] != "m1" {
		t.Errorf("response %s", body)
	}
	if got := dig(v, "output", 0, "content", 0, "text"); got != "tok0 tok1 | echo: hi there" {
		t.Errorf("text %v", got)
	}
	if dig(v, "usage", "output_tokens") != 2.0 || dig(v, "usage", "input_tokens") != 2.0 {
		t.Errorf("usage %v", v["usage"])
	}

	resp, body = f.postJSON("/v1/responses", `{"model":"m1","input":"hi","stream":true}`)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, ct)
	}
	events := namedEvents(t, string(body))
	var names []string
	var deltas string
	for i, e := range events {
		names = append(names, e.name)
		if e.data["type"] != e.name || e.data["sequence_number"] != float64(i) {
			t.Errorf("event %d: name %q, data %v", i, e.name, e.data)
		}
		if e.name == "response.output_text.delta" {
			deltas += e.data["delta"].(string)
		}
	}
	want := "response.created response.in_progress response.output_item.added response.content_part.added " +
		"response.output_text.delta response.output_text.delta response.output_text.delta response.output_text.done " +
		"response.content_part.done response.output_item.done response.completed"
	if strings.Join(names, " ") != want {
		t.Errorf("events %v", names)
	}
	last := events[len(events)-1].data
	if deltas != "tok0 tok1 tok2 " || dig(last, "response", "output", 0, "content", 0, "text") != deltas ||
		dig(last, "response", "status") != "completed" {
		t.Errorf("deltas %q, last %v", deltas, last)
	}
}

func TestMessagesAPI(t *testing.T) {
	f := start(t, "-tokens", "3", "-stream-interval", "1ms")
	f.waitReady()
	req := `{"model":"claude-x","max_tokens":100,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hello you"}]}]}`
	resp, body := f.postJSON("/v1/messages", req)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	v := decodeJSON(t, body)
	if v["type"] != "message" || v["role"] != "assistant" || v["model"] != "claude-x" || v["stop_reason"] != "end_turn" {
		t.Errorf("message %s", body)
	}
	if got := dig(v, "content", 0, "text"); got != "tok0 tok1 tok2 | echo: hello you" {
		t.Errorf("text %v", got)
	}
	if dig(v, "usage", "input_tokens") != 4.0 || dig(v, "usage", "output_tokens") != 3.0 {
		t.Errorf("usage %v", v["usage"])
	}

	_, body = f.postJSON("/v1/messages", strings.Replace(req, `"max_tokens":100`, `"max_tokens":2,"stream":true`, 1))
	var names []string
	var text string
	for _, e := range namedEvents(t, string(body)) {
		names = append(names, e.name)
		if e.data["type"] != e.name {
			t.Errorf("event %q has type %v", e.name, e.data["type"])
		}
		if e.name == "content_block_delta" {
			text += dig(e.data, "delta", "text").(string)
		}
		if e.name == "message_delta" && dig(e.data, "delta", "stop_reason") != "max_tokens" {
			t.Errorf("message_delta %v", e.data)
		}
	}
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if strings.Join(names, " ") != want || text != "tok0 tok1 " {
		t.Errorf("events %v, text %q", names, text)
	}

	resp, body = f.postJSON("/v1/messages/count_tokens", req)
	if resp.StatusCode != 200 || decodeJSON(t, body)["input_tokens"] != 4.0 {
		t.Errorf("count_tokens: %d %s", resp.StatusCode, body)
	}
	if resp, body := f.postJSON("/v1/messages", `{"model":"x"}`); resp.StatusCode != 400 {
		t.Errorf("no messages: %d %s", resp.StatusCode, body)
	}
}

func TestLlamaCppEndpoints(t *testing.T) {
	f := start(t, "-tokens", "2", "-stream-interval", "1ms", "-model", "llama")
	f.waitReady()
	resp, body := f.postJSON("/completion", `{"prompt":"once upon","n_predict":1}`)
	v := decodeJSON(t, body)
	if resp.StatusCode != 200 || v["content"] != "tok0 | echo: once upon" || v["stop"] != true {
		t.Errorf("/completion: %d %s", resp.StatusCode, body)
	}
	_, body = f.postJSON("/completion", `{"prompt":"x","stream":true}`)
	events := namedEvents(t, string(body))
	if len(events) != 3 || events[0].data["content"] != "tok0 " || events[2].data["stop"] != true ||
		strings.Contains(string(body), "[DONE]") {
		t.Errorf("/completion stream %q", body)
	}

	_, body = f.postJSON("/tokenize", `{"content":"hello world hello"}`)
	tokens, _ := decodeJSON(t, body)["tokens"].([]any)
	if len(tokens) != 3 || tokens[0] != tokens[2] || tokens[0] == tokens[1] {
		t.Errorf("/tokenize %s", body)
	}
	_, body = f.postJSON("/detokenize", `{"tokens":[7,42]}`)
	if decodeJSON(t, body)["content"] != "t7 t42" {
		t.Errorf("/detokenize %s", body)
	}
	resp, body = f.do("GET", "/props?model=llama", "", nil)
	if resp.StatusCode != 200 || decodeJSON(t, body)["model_alias"] != "llama" {
		t.Errorf("/props: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Mock-Path"); got != "/props?model=llama" {
		t.Errorf("X-Mock-Path %q", got)
	}
	resp, body = f.do("GET", "/v1/audio/voices?model=kokoro", "", nil)
	if resp.StatusCode != 200 || decodeJSON(t, body)["model"] != "kokoro" {
		t.Errorf("/v1/audio/voices: %d %s", resp.StatusCode, body)
	}
	// Every model endpoint counts, and waits for the load like /v1 does.
	if n := f.stats().Requests; n != 4 {
		t.Errorf("%d model POSTs counted, want 4", n)
	}
	g := start(t, "-startup", "1h")
	if resp, _ := g.postJSON("/tokenize", `{"content":"x"}`); resp.StatusCode != 503 {
		t.Errorf("/tokenize while loading: %d", resp.StatusCode)
	}
}
