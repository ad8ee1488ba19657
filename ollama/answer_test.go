package ollama

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"
)

// t0 is when the test requests arrive.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock answers t0+1s, then 1ms later at each call: the same calls
// always read the same times.
type fakeClock struct{ next time.Time }

func newClock() *fakeClock { return &fakeClock{next: t0.Add(time.Second)} }

func (c *fakeClock) now() time.Time {
	t := c.next
	c.next = c.next.Add(time.Millisecond)
	return t
}

// at is the created_at of the clock's nth call (from 0).
func at(n int) string {
	return t0.Add(time.Second + time.Duration(n)*time.Millisecond).Format(time.RFC3339Nano)
}

func newAnswer(ep Endpoint, model string) *Answer {
	a := NewAnswer(&Request{Endpoint: ep, Model: model}, t0, newClock().now)
	a.SetLoadDuration(200 * time.Millisecond)
	return a
}

type streamCase struct {
	name string
	ep   Endpoint
	in   string
	end  error // what End is told
	want string
}

func streamCases() []streamCase {
	chatLine := func(n int, content, extra string) string {
		return `{"model":"qwen3:8b","created_at":"` + at(n) + `","message":{"role":"assistant","content":` + content + extra + `},"done":false}` + "\n"
	}
	return []streamCase{
		{name: "chat: thinking, content, usage", ep: Chat,
			in: ": keep-alive comment\n" +
				"event: message\n" +
				"id: 1\n" +
				`data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"reasoning_content":"Let me think."}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}` + "\n\n" +
				`data:{"choices":[{"index":0,"delta":{"content":" world\n\"quoted\" <b> é 😀"},"finish_reason":"stop"}]}` + "\n\n" +
				`data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}` + "\n\n" +
				"data: [DONE]\n\n",
			want: chatLine(1, `""`, `,"thinking":"Let me think."`) +
				chatLine(2, `"Hello"`, "") +
				chatLine(3, `" world\n\"quoted\" <b> é 😀"`, "") +
				`{"model":"qwen3:8b","created_at":"` + at(4) + `","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",` +
				`"total_duration":1004000000,"load_duration":200000000,"prompt_eval_count":12,"prompt_eval_duration":800000000,` +
				`"eval_count":3,"eval_duration":4000000}` + "\n"},
		{name: "chat: vLLM's reasoning field, CRLF, [DONE] without its newline", ep: Chat,
			in: `data: {"choices":[{"index":0,"delta":{"reasoning":"hmm"}}]}` + "\r\n\r\n" +
				`data: {"choices":[{"index":0,"delta":{"content":"ok","reasoning":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}` + "\r\n\r\n" +
				"data: [DONE]",
			want: chatLine(1, `""`, `,"thinking":"hmm"`) +
				chatLine(2, `"ok"`, "") +
				`{"model":"qwen3:8b","created_at":"` + at(3) + `","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",` +
				`"total_duration":1003000000,"load_duration":200000000,"prompt_eval_count":1,"prompt_eval_duration":800000000,` +
				`"eval_count":2,"eval_duration":3000000}` + "\n"},
		{name: "chat: tool calls gathered, sent before the final line", ep: Chat,
			in: `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Checking."}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"time","arguments":"{}"}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"id":"call_c","function":{"name":"weather"}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":30,"completion_tokens":20}}` + "\n\n" +
				"data: [DONE]\n\n",
			want: chatLine(1, `"Checking."`, "") +
				`{"model":"qwen3:8b","created_at":"` + at(2) + `","message":{"role":"assistant","content":"","tool_calls":[` +
				`{"id":"call_a","function":{"index":0,"name":"weather","arguments":{"city":"Paris"}}},` +
				`{"id":"call_b","function":{"index":1,"name":"time","arguments":{}}},` +
				`{"id":"call_c","function":{"index":2,"name":"weather","arguments":{}}}]},"done":false}` + "\n" +
				`{"model":"qwen3:8b","created_at":"` + at(3) + `","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",` +
				`"total_duration":1003000000,"load_duration":200000000,"prompt_eval_count":30,"prompt_eval_duration":800000000,` +
				`"eval_count":20,"eval_duration":3000000}` + "\n"},
		{name: "chat: a call cut by the token limit is text, the stream ends without [DONE]", ep: Chat,
			in: `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"x","function":{"name":"f","arguments":"{\"a\":"}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}` + "\n\n",
			want: `{"model":"qwen3:8b","created_at":"` + at(1) + `","message":{"role":"assistant","content":"{\"a\":"},"done":false}` + "\n" +
				`{"model":"qwen3:8b","created_at":"` + at(2) + `","message":{"role":"assistant","content":""},"done":true,"done_reason":"length",` +
				`"total_duration":1002000000,"load_duration":200000000,"prompt_eval_duration":800000000,"eval_duration":2000000}` + "\n"},
		{name: "chat: an error event ends the answer", ep: Chat,
			in: `data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}` + "\n\n" +
				`data: {"error":{"message":"the backend ran out of memory","type":"server_error","code":500}}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}` + "\n\n" +
				"data: [DONE]\n\n",
			want: chatLine(1, `"Hel"`, "") + `{"error":"the backend ran out of memory"}` + "\n"},
		{name: "chat: an error given as a string", ep: Chat,
			in:   `data: {"error":"bad things"}` + "\n\n",
			want: `{"error":"bad things"}` + "\n"},
		{name: "chat: a bare JSON error instead of events", ep: Chat,
			in:   `{"error":{"code":400,"message":"the request exceeds the context size","type":"exceed_context_size_error"}}`,
			want: `{"error":"the request exceeds the context size"}` + "\n"},
		{name: "chat: cut", ep: Chat, end: io.ErrUnexpectedEOF,
			in:   `data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}` + "\n\n" + `data: {"choices":[{"index":0,"del`,
			want: chatLine(1, `"Hel"`, "") + `{"error":"the backend's answer was cut: unexpected EOF"}` + "\n"},
		{name: "chat: nothing at all, ended cleanly", ep: Chat,
			in: "",
			want: `{"model":"qwen3:8b","created_at":"` + at(0) + `","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",` +
				`"total_duration":1000000000,"load_duration":200000000,"prompt_eval_duration":800000000}` + "\n"},
		{name: "chat: lines not JSON, other choices and empty deltas skipped", ep: Chat,
			in: "data: not json\n\ndata: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}}]}\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}\n\n" +
				"retry: 100\n\n{\"not\":\"an error\"}\n\ndata: [DONE]\n\n",
			want: `{"model":"qwen3:8b","created_at":"` + at(0) + `","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",` +
				`"total_duration":1000000000,"load_duration":200000000,"prompt_eval_duration":800000000}` + "\n"},
		{name: "generate: chat chunks as response, thinking beside it", ep: Generate,
			in: `data: {"choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"content":"Blue."},"finish_reason":"stop"}]}` + "\n\n" +
				`data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}` + "\n\n" +
				"data: [DONE]\n\n",
			want: `{"model":"qwen3:8b","created_at":"` + at(1) + `","response":"","thinking":"hm","done":false}` + "\n" +
				`{"model":"qwen3:8b","created_at":"` + at(2) + `","response":"Blue.","done":false}` + "\n" +
				`{"model":"qwen3:8b","created_at":"` + at(3) + `","response":"","done":true,"done_reason":"stop",` +
				`"total_duration":1003000000,"load_duration":200000000,"prompt_eval_count":5,"prompt_eval_duration":800000000,` +
				`"eval_count":2,"eval_duration":3000000}` + "\n"},
		{name: "generate: completions text, llama-server's timings", ep: Generate,
			in: `data: {"choices":[{"index":0,"text":"def"}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"text":" f():","finish_reason":"length"}],"timings":{"prompt_n":5,"prompt_ms":12.5,"predicted_n":2,"predicted_ms":30.25}}` + "\n\n" +
				"data: [DONE]\n\n",
			want: `{"model":"qwen3:8b","created_at":"` + at(1) + `","response":"def","done":false}` + "\n" +
				`{"model":"qwen3:8b","created_at":"` + at(2) + `","response":" f():","done":false}` + "\n" +
				`{"model":"qwen3:8b","created_at":"` + at(3) + `","response":"","done":true,"done_reason":"length",` +
				`"total_duration":1003000000,"load_duration":200000000,"prompt_eval_count":5,"prompt_eval_duration":12500000,` +
				`"eval_count":2,"eval_duration":30250000}` + "\n"},
		{name: "generate: usage wins over timings' counts", ep: Generate,
			in: `data: {"choices":[{"index":0,"text":"x","finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":1},"timings":{"prompt_n":6,"prompt_ms":1,"predicted_n":1,"predicted_ms":2}}` + "\n\n" +
				"data: [DONE]\n\n",
			want: `{"model":"qwen3:8b","created_at":"` + at(1) + `","response":"x","done":false}` + "\n" +
				`{"model":"qwen3:8b","created_at":"` + at(2) + `","response":"","done":true,"done_reason":"stop",` +
				`"total_duration":1002000000,"load_duration":200000000,"prompt_eval_count":7,"prompt_eval_duration":1000000,` +
				`"eval_count":1,"eval_duration":2000000}` + "\n"},
		{name: "generate: tool calls beside the response", ep: Generate,
			in: `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{\"a\":[1, 2]}"}}]}}]}` + "\n\n" +
				"data: [DONE]\n\n",
			want: `{"model":"qwen3:8b","created_at":"` + at(1) + `","response":"","tool_calls":[{"function":{"index":0,"name":"f","arguments":{"a":[1,2]}}}],"done":false}` + "\n" +
				`{"model":"qwen3:8b","created_at":"` + at(2) + `","response":"","done":true,"done_reason":"stop",` +
				`"total_duration":1002000000,"load_duration":200000000,"prompt_eval_duration":800000000,"eval_duration":2000000}` + "\n"},
	}
}

// feedAll feeds pieces then ends.
func feedAll(a *Answer, pieces [][]byte, end error) []byte {
	var out []byte
	for _, p := range pieces {
		out = a.Feed(out, p)
	}
	return a.End(out, end)
}

func TestAnswerStream(t *testing.T) {
	for _, c := range streamCases() {
		t.Run(c.name, func(t *testing.T) {
			a := newAnswer(c.ep, "qwen3:8b")
			got := feedAll(a, [][]byte{[]byte(c.in)}, c.end)
			if string(got) != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
			if !a.Done() {
				t.Error("not done after End")
			}
			checkLines(t, got)
			if more := a.End(a.Feed(nil, []byte("data: [DONE]\n")), nil); len(more) > 0 {
				t.Errorf("wrote after the end: %s", more)
			}
		})
	}
}

// TestAnswerStreamSplits feeds each stream cut at every byte boundary, and
// byte by byte: the output is the same however the input is split.
func TestAnswerStreamSplits(t *testing.T) {
	for _, c := range streamCases() {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			for i := 0; i <= len(in); i++ {
				got := feedAll(newAnswer(c.ep, "qwen3:8b"), [][]byte{in[:i], in[i:]}, c.end)
				if string(got) != c.want {
					t.Fatalf("cut at %d:\n%s\nwant\n%s", i, got, c.want)
				}
			}
			var pieces [][]byte
			for i := range in {
				pieces = append(pieces, in[i:i+1])
			}
			if got := feedAll(newAnswer(c.ep, "qwen3:8b"), pieces, c.end); string(got) != c.want {
				t.Fatalf("byte by byte:\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// checkLines checks that out is lines of JSON objects, with one final line
// (done:true or an error) and that one last.
func checkLines(t *testing.T, out []byte) {
	t.Helper()
	if len(out) > 0 && out[len(out)-1] != '\n' {
		t.Errorf("output does not end with a newline: %q", out)
	}
	finals := 0
	for i, l := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if len(out) == 0 {
			break
		}
		var v struct {
			Done  bool    `json:"done"`
			Error *string `json:"error"`
		}
		if err := json.Unmarshal(l, &v); err != nil {
			t.Errorf("line %d is not JSON: %v: %q", i, err, l)
			continue
		}
		if finals > 0 {
			t.Errorf("line %d after the final line: %s", i, l)
		}
		if v.Done || v.Error != nil {
			finals++
		}
	}
}

func TestAnswerFeedSteadyStateAllocs(t *testing.T) {
	a := newAnswer(Chat, "m")
	dst := make([]byte, 0, 4096)
	// Comments and the lines around events cost nothing once the buffers
	// have grown.
	in := []byte(": ping\n\nevent: message\n\n")
	allocs := testing.AllocsPerRun(100, func() { dst = a.Feed(dst[:0], in) })
	if allocs != 0 {
		t.Errorf("%v allocations per Feed of comments", allocs)
	}
}

type wholeCase struct {
	name   string
	ep     Endpoint
	status int
	in     string
	want   string
}

func TestAnswerWhole(t *testing.T) {
	cases := []wholeCase{
		{name: "chat", ep: Chat, status: 200,
			in: `{"id":"x","object":"chat.completion","model":"upstream","choices":[{"index":0,"message":{"role":"assistant","content":"Hi <there>","reasoning_content":"hmm"},"finish_reason":"stop"}],` +
				`"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`,
			want: `{"model":"m","created_at":"` + at(0) + `","message":{"role":"assistant","content":"Hi <there>","thinking":"hmm"},"done":true,"done_reason":"stop",` +
				`"total_duration":1000000000,"load_duration":200000000,"prompt_eval_count":9,"eval_count":4,"eval_duration":800000000}`},
		{name: "chat with tool calls and no content", ep: Chat, status: 200,
			in: `{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
				`{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\": \"Paris\"}"}},` +
				`{"id":"call_2","type":"function","function":{"name":"time","arguments":""}}]},"finish_reason":"tool_calls"}],` +
				`"usage":{"prompt_tokens":9,"completion_tokens":4}}`,
			want: `{"model":"m","created_at":"` + at(0) + `","message":{"role":"assistant","content":"","tool_calls":[` +
				`{"id":"call_1","function":{"index":0,"name":"weather","arguments":{"city":"Paris"}}},` +
				`{"id":"call_2","function":{"index":1,"name":"time","arguments":{}}}]},"done":true,"done_reason":"stop",` +
				`"total_duration":1000000000,"load_duration":200000000,"prompt_eval_count":9,"eval_count":4,"eval_duration":800000000}`},
		{name: "chat with tool calls, content and thinking", ep: Chat, status: 200,
			in: `{"choices":[{"index":0,"message":{"content":"Let me look.","reasoning_content":"r","tool_calls":[` +
				`{"id":"call_1","function":{"name":"f","arguments":{"a":1}}}]},"finish_reason":"tool_calls"}]}`,
			want: `{"model":"m","created_at":"` + at(0) + `","message":{"role":"assistant","content":"Let me look.","thinking":"r","tool_calls":[` +
				`{"id":"call_1","function":{"index":0,"name":"f","arguments":{"a":1}}}]},"done":true,"done_reason":"stop",` +
				`"total_duration":1000000000,"load_duration":200000000,"eval_duration":800000000}`},
		{name: "generate through chat, timings", ep: Generate, status: 200,
			in: `{"choices":[{"index":0,"message":{"content":"Blue."},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2},` +
				`"timings":{"prompt_n":3,"prompt_ms":4.5,"predicted_n":2,"predicted_ms":8}}`,
			want: `{"model":"m","created_at":"` + at(0) + `","response":"Blue.","done":true,"done_reason":"length",` +
				`"total_duration":1000000000,"load_duration":200000000,"prompt_eval_count":3,"prompt_eval_duration":4500000,"eval_count":2,"eval_duration":8000000}`},
		{name: "generate through completions", ep: Generate, status: 200,
			in: `{"object":"text_completion","choices":[{"index":0,"text":"    return x","finish_reason":"stop"}]}`,
			want: `{"model":"m","created_at":"` + at(0) + `","response":"    return x","done":true,"done_reason":"stop",` +
				`"total_duration":1000000000,"load_duration":200000000,"eval_duration":800000000}`},
		{name: "OpenAI error", ep: Chat, status: 400,
			in:   `{"error":{"message":"the prompt is too long","type":"invalid_request_error"}}`,
			want: `{"error":"the prompt is too long"}`},
		{name: "error string", ep: Generate, status: 500, in: `{"error":"boom"}`, want: `{"error":"boom"}`},
		{name: "vLLM's error", ep: Chat, status: 400,
			in:   `{"object":"error","message":"max_tokens is too large","type":"BadRequestError","code":400}`,
			want: `{"error":"max_tokens is too large"}`},
		{name: "FastAPI's detail", ep: Embed, status: 422,
			in:   `{"detail":[{"loc":["body","input"],"msg":"field required"}]}`,
			want: `{"error":"[{\"loc\":[\"body\",\"input\"],\"msg\":\"field required\"}]"}`},
		{name: "text error", ep: Chat, status: 502, in: "upstream gone\n", want: `{"error":"upstream gone"}`},
		{name: "empty error", ep: Embeddings, status: 503, in: "", want: `{"error":"the backend answered status 503"}`},
		{name: "answer not JSON", ep: Chat, status: 200, in: "<html>", want: `{"error":"the backend's answer is not JSON: invalid character '\u003c' looking for beginning of value"}`},
		{name: "error in a 200", ep: Chat, status: 200, in: `{"error":{"message":"late"}}`, want: `{"error":"late"}`},
		{name: "embed: numbers as written, in index order", ep: Embed, status: 200,
			in: `{"object":"list","data":[{"object":"embedding","index":1,"embedding":[ 1e-3, -0.0 ]},` +
				`{"object":"embedding","index":0,"embedding":[0.1234567890123456789,2]}],"model":"upstream","usage":{"prompt_tokens":6,"total_tokens":6}}`,
			want: `{"model":"m","embeddings":[[0.1234567890123456789,2],[1e-3,-0.0]],"total_duration":1000000000,"load_duration":200000000,"prompt_eval_count":6}`},
		{name: "embed: no data", ep: Embed, status: 200, in: `{"data":[]}`,
			want: `{"model":"m","embeddings":[],"total_duration":1000000000,"load_duration":200000000}`},
		{name: "embed: error", ep: Embed, status: 200, in: `{"error":{"message":"too long"}}`, want: `{"error":"too long"}`},
		{name: "embed: not JSON", ep: Embed, status: 200, in: `{`, want: `{"error":"the backend's answer is not JSON: unexpected end of JSON input"}`},
		{name: "embeddings", ep: Embeddings, status: 200,
			in:   `{"data":[{"index":0,"embedding":[0.5,-1.25e+2]}],"usage":{"prompt_tokens":2}}`,
			want: `{"embedding":[0.5,-1.25e+2]}`},
		{name: "embeddings: no data", ep: Embeddings, status: 200, in: `{"data":[]}`, want: `{"embedding":[]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newAnswer(c.ep, "m")
			got := a.Whole(c.status, []byte(c.in))
			if string(got) != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
			if !json.Valid(got) {
				t.Error("not JSON")
			}
			if !a.Done() {
				t.Error("not done")
			}
		})
	}
}

func TestLoadAnswer(t *testing.T) {
	now := t0
	cases := []struct {
		ep     Endpoint
		reason string
		want   string
	}{
		{Chat, "load", `{"model":"m","created_at":"2025-01-02T03:04:05Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"load"}`},
		{Chat, "unload", `{"model":"m","created_at":"2025-01-02T03:04:05Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"unload"}`},
		{Generate, "load", `{"model":"m","created_at":"2025-01-02T03:04:05Z","response":"","done":true,"done_reason":"load"}`},
		{Generate, "unload", `{"model":"m","created_at":"2025-01-02T03:04:05Z","response":"","done":true,"done_reason":"unload"}`},
		{Embed, "load", `{"model":"m","embeddings":[]}`},
		{Embeddings, "load", `{"embedding":[]}`},
	}
	for _, c := range cases {
		if got := LoadAnswer(c.ep, "m", c.reason, now); string(got) != c.want {
			t.Errorf("LoadAnswer(%v, %q)\n got %s\nwant %s", c.ep, c.reason, got, c.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	now := t0.Add(123456789 * time.Nanosecond)
	cases := []struct {
		ep   Endpoint
		want string
	}{
		{Chat, `{"model":"m\"x","created_at":"2025-01-02T03:04:05.123456789Z","message":{"role":"assistant","content":"","thinking":"loading m: 40%\n"},"done":false}` + "\n"},
		{Generate, `{"model":"m\"x","created_at":"2025-01-02T03:04:05.123456789Z","response":"","thinking":"loading m: 40%\n","done":false}` + "\n"},
		{Embed, ""},
		{Embeddings, ""},
	}
	for _, c := range cases {
		if got := ProgressLine(c.ep, `m"x`, "loading m: 40%\n", now); string(got) != c.want {
			t.Errorf("ProgressLine(%v)\n got %s\nwant %s", c.ep, got, c.want)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote \" backslash \\ slash /", "\x00\x01\x1f\x7f\t\r\n",
		"<script>&", "é😀", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("appendString(%q) = %s: not JSON: %v", s, got, err)
			continue
		}
		// encoding/json's reading of s is the one to match.
		ref, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(ref, &want)
		if back != want {
			t.Errorf("appendString(%q) reads back as %q, want %q", s, back, want)
		}
	}
}

func TestEndTellsTheCut(t *testing.T) {
	a := newAnswer(Chat, "m")
	out := a.End(nil, errors.New("connection reset"))
	if string(out) != `{"error":"the backend's answer was cut: connection reset"}`+"\n" {
		t.Errorf("got %s", out)
	}
}

// BenchmarkAnswerFeed is the cost of translating one streamed token: an
// OpenAI chunk in, an NDJSON line out.
func BenchmarkAnswerFeed(b *testing.B) {
	a := newAnswer(Chat, "qwen")
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"qwen3-8b",` +
		`"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}` + "\n\n")
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		dst = a.Feed(dst[:0], chunk)
	}
}

// BenchmarkParse is the cost of translating a small Ollama chat request.
func BenchmarkParse(b *testing.B) {
	body := []byte(`{"model":"qwen","messages":[{"role":"system","content":"You are a helpful assistant."},` +
		`{"role":"user","content":"What is the capital of France?"}],"options":{"temperature":0.2,"num_ctx":4096,"top_k":20},"keep_alive":"5m"}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(Chat, body); err != nil {
			b.Fatal(err)
		}
	}
}
