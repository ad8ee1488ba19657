package ollama

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Base64 openings of the image types the sniffer knows.
const (
	pngB64  = "iVBORw0KGgoAAAANSUhEUg=="
	jpegB64 = "/9j/4AAQSkZJRgABAQ=="
	gifB64  = "R0lGODlhAQABAAAAACw="
	webpB64 = "UklGRiQAAABXRUJQVlA4IBgAAAAw"
	binB64  = "AAECAwQFBgcICQoLDA0ODw=="
)

func TestEndpointOf(t *testing.T) {
	for path, want := range map[string]Endpoint{
		"/api/chat": Chat, "/api/generate": Generate, "/api/embed": Embed, "/api/embeddings": Embeddings,
	} {
		if got, ok := EndpointOf(path); !ok || got != want {
			t.Errorf("EndpointOf(%q) = %v, %v; want %v", path, got, ok, want)
		}
	}
	for _, path := range []string{"/api/tags", "/v1/chat/completions", "/api/chat/", ""} {
		if _, ok := EndpointOf(path); ok {
			t.Errorf("EndpointOf(%q) is an endpoint", path)
		}
	}
}

func dur(d time.Duration) *time.Duration { return &d }

type parseCase struct {
	name      string
	ep        Endpoint
	in        string
	path      string
	body      string
	stream    bool
	keepAlive *time.Duration
	empty     bool
	ignored   []string
}

func TestParse(t *testing.T) {
	const streamOn = `"stream":true,"stream_options":{"include_usage":true}`
	cases := []parseCase{
		// chat
		{name: "chat, streamed by default", ep: Chat,
			in:     `{"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}]}`,
			path:   "/v1/chat/completions",
			body:   `{"messages":[{"role":"user","content":"hi"}],"model":"qwen3:8b",` + streamOn + `}`,
			stream: true},
		{name: "chat, not streamed", ep: Chat,
			in:   `{"model":"m","stream":false,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"a <b> & c"}]}`,
			path: "/v1/chat/completions",
			body: `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"a <b> & c"}],"model":"m"}`},
		{name: "chat, null stream is the default", ep: Chat,
			in:     `{"model":"m","stream":null,"messages":[{"role":"user","content":"x"}]}`,
			path:   "/v1/chat/completions",
			body:   `{"messages":[{"role":"user","content":"x"}],"model":"m",` + streamOn + `}`,
			stream: true},
		{name: "chat, images sniffed", ep: Chat,
			in: `{"model":"m","stream":false,"messages":[{"role":"user","content":"what?","images":["` +
				pngB64 + `","` + jpegB64 + `","` + gifB64 + `","` + webpB64 + `","` + binB64 + `","data:image/avif;base64,AAAA"]}]}`,
			path: "/v1/chat/completions",
			body: `{"messages":[{"role":"user","content":[{"type":"text","text":"what?"},` +
				`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + pngB64 + `"}},` +
				`{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,` + jpegB64 + `"}},` +
				`{"type":"image_url","image_url":{"url":"data:image/gif;base64,` + gifB64 + `"}},` +
				`{"type":"image_url","image_url":{"url":"data:image/webp;base64,` + webpB64 + `"}},` +
				`{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,` + binB64 + `"}},` +
				`{"type":"image_url","image_url":{"url":"data:image/avif;base64,AAAA"}}]}],"model":"m"}`},
		{name: "chat, an image without text", ep: Chat,
			in:   `{"model":"m","stream":false,"messages":[{"role":"user","content":"","images":["` + pngB64 + `"]}]}`,
			path: "/v1/chat/completions",
			body: `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,` + pngB64 + `"}}]}],"model":"m"}`},
		{name: "chat, thinking in history dropped, tool calls and answers linked", ep: Chat,
			in: `{"model":"m","stream":false,"messages":[` +
				`{"role":"user","content":"weather in Paris and Rome, and the time?"},` +
				`{"role":"assistant","content":"","thinking":"two calls","tool_calls":[` +
				`{"function":{"name":"weather","arguments":{"city":"Paris"}}},` +
				`{"function":{"name":"time","arguments":{}}},` +
				`{"function":{"name":"weather","arguments":{"city": "Rome"}}}]},` +
				`{"role":"tool","tool_name":"time","content":"noon"},` +
				`{"role":"tool","tool_name":"weather","content":"sun"},` +
				`{"role":"tool","content":"rain"},` +
				`{"role":"assistant","content":"ok","tool_calls":[{"id":"given","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},` +
				`{"role":"tool","tool_call_id":"mine","content":"snow"},` +
				`{"role":"tool","tool_name":"weather","content":"snow"}]}`,
			path: "/v1/chat/completions",
			body: `{"messages":[` +
				`{"role":"user","content":"weather in Paris and Rome, and the time?"},` +
				`{"role":"assistant","content":"","tool_calls":[` +
				`{"id":"call_0","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}},` +
				`{"id":"call_1","type":"function","function":{"name":"time","arguments":"{}"}},` +
				`{"id":"call_2","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Rome\"}"}}]},` +
				`{"role":"tool","content":"noon","tool_call_id":"call_1"},` +
				`{"role":"tool","content":"sun","tool_call_id":"call_0"},` +
				`{"role":"tool","content":"rain","tool_call_id":"call_2"},` +
				`{"role":"assistant","content":"ok","tool_calls":[{"id":"given","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},` +
				`{"role":"tool","content":"snow","tool_call_id":"mine"},` +
				`{"role":"tool","content":"snow","tool_call_id":"given"}],"model":"m"}`},
		{name: "chat, tools, format json, think true", ep: Chat,
			in: `{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}],"format":"json","think":true,` +
				`"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{}}}}]}`,
			path: "/v1/chat/completions",
			body: `{"chat_template_kwargs":{"enable_thinking":true},"messages":[{"role":"user","content":"x"}],"model":"m",` +
				`"response_format":{"type":"json_object"},` +
				`"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{}}}}]}`},
		{name: "chat, schema format, think false, empty tools", ep: Chat,
			in:   `{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}],"format":{"type":"object","properties":{"a":{"type":"integer"}}},"think":false,"tools":[]}`,
			path: "/v1/chat/completions",
			body: `{"chat_template_kwargs":{"enable_thinking":false},"messages":[{"role":"user","content":"x"}],"model":"m",` +
				`"response_format":{"json_schema":{"name":"schema","schema":{"type":"object","properties":{"a":{"type":"integer"}}}},"type":"json_schema"}}`},
		{name: "chat, think levels, empty format", ep: Chat,
			in:   `{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}],"think":"medium","format":""}`,
			path: "/v1/chat/completions",
			body: `{"chat_template_kwargs":{"enable_thinking":true},"messages":[{"role":"user","content":"x"}],"model":"m","reasoning_effort":"medium"}`},
		{name: "chat, think max is high", ep: Chat,
			in:   `{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}],"think":"max"}`,
			path: "/v1/chat/completions",
			body: `{"chat_template_kwargs":{"enable_thinking":true},"messages":[{"role":"user","content":"x"}],"model":"m","reasoning_effort":"high"}`},
		{name: "chat, every option", ep: Chat,
			in: `{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}],"options":{` +
				`"temperature":0.70,"top_p":0.9,"seed":42,"stop":["\n\n","END"],"num_predict":128,` +
				`"frequency_penalty":0.5,"presence_penalty":-0.5,"top_k":40,"min_p":0.05,"typical_p":1,` +
				`"repeat_penalty":1.1,"repeat_last_n":64,"num_ctx":8192,"num_gpu":99,"num_thread":8,` +
				`"mirostat":2,"mirostat_eta":0.1,"mirostat_tau":5,"num_keep":4,"penalize_newline":true,"low_vram":null}}`,
			path: "/v1/chat/completions",
			body: `{"frequency_penalty":0.5,"max_tokens":128,"messages":[{"role":"user","content":"x"}],"min_p":0.05,"model":"m",` +
				`"presence_penalty":-0.5,"repeat_last_n":64,"repeat_penalty":1.1,"seed":42,"stop":["\n\n","END"],` +
				`"temperature":0.70,"top_k":40,"top_p":0.9,"typical_p":1}`,
			ignored: []string{"options.mirostat", "options.mirostat_eta", "options.mirostat_tau", "options.num_ctx",
				"options.num_gpu", "options.num_keep", "options.num_thread", "options.penalize_newline"}},
		{name: "chat, negative num_predict left out, stop as a string, whole floats", ep: Chat,
			in:   `{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}],"options":{"num_predict":-1,"stop":"END","seed":7.0}}`,
			path: "/v1/chat/completions",
			body: `{"messages":[{"role":"user","content":"x"}],"model":"m","seed":7,"stop":["END"]}`},
		{name: "chat, no messages: load", ep: Chat,
			in:   `{"model":"m"}`,
			path: "/v1/chat/completions",
			body: `{"messages":[],"model":"m",` + streamOn + `}`, stream: true, empty: true},
		{name: "chat, no messages and keep_alive 0: unload", ep: Chat,
			in:   `{"model":"m","messages":[],"keep_alive":0}`,
			path: "/v1/chat/completions",
			body: `{"messages":[],"model":"m",` + streamOn + `}`, stream: true, empty: true, keepAlive: dur(0)},
		{name: "chat, unknown fields ignored", ep: Chat,
			in:   `{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}],"truncate":true,"shift":false,"logprobs":true,"top_logprobs":3,"something":{"new":1},"keep_alive":"10m"}`,
			path: "/v1/chat/completions",
			body: `{"messages":[{"role":"user","content":"x"}],"model":"m"}`, keepAlive: dur(10 * time.Minute),
			ignored: []string{"logprobs", "shift", "something", "top_logprobs", "truncate"}},

		// generate
		{name: "generate, system and prompt as chat", ep: Generate,
			in:     `{"model":"m","system":"be brief","prompt":"why is the sky blue?"}`,
			path:   "/v1/chat/completions",
			body:   `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"why is the sky blue?"}],"model":"m",` + streamOn + `}`,
			stream: true},
		{name: "generate, images, think, format, options", ep: Generate,
			in:   `{"model":"m","stream":false,"prompt":"what?","images":["` + jpegB64 + `"],"think":"low","format":"json","options":{"temperature":0,"num_ctx":2048}}`,
			path: "/v1/chat/completions",
			body: `{"chat_template_kwargs":{"enable_thinking":true},"messages":[{"role":"user","content":[{"type":"text","text":"what?"},` +
				`{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,` + jpegB64 + `"}}]}],"model":"m","reasoning_effort":"low",` +
				`"response_format":{"type":"json_object"},"temperature":0}`,
			ignored: []string{"options.num_ctx"}},
		{name: "generate, template and context ignored", ep: Generate,
			in:      `{"model":"m","stream":false,"prompt":"p","template":"{{ .Prompt }}","context":[1,2,3]}`,
			path:    "/v1/chat/completions",
			body:    `{"messages":[{"role":"user","content":"p"}],"model":"m"}`,
			ignored: []string{"context", "template"}},
		{name: "generate, raw", ep: Generate,
			in:      `{"model":"m","stream":false,"raw":true,"prompt":"[INST] hi [/INST]","system":"s","think":true,"images":["` + pngB64 + `"],"options":{"num_predict":5}}`,
			path:    "/v1/completions",
			body:    `{"max_tokens":5,"model":"m","prompt":"[INST] hi [/INST]"}`,
			ignored: []string{"images", "system", "think"}},
		{name: "generate, suffix: fill in the middle", ep: Generate,
			in:     `{"model":"m","prompt":"def f(","suffix":"    return x"}`,
			path:   "/v1/completions",
			body:   `{"model":"m","prompt":"def f(",` + streamOn + `,"suffix":"    return x"}`,
			stream: true},
		{name: "generate, no prompt: load", ep: Generate,
			in:   `{"model":"m","keep_alive":"-1"}`,
			path: "/v1/chat/completions",
			body: `{"messages":[],"model":"m",` + streamOn + `}`, stream: true, empty: true, keepAlive: dur(-time.Second)},
		{name: "generate, no prompt with a system: load", ep: Generate,
			in:   `{"model":"m","system":"s","stream":false}`,
			path: "/v1/chat/completions",
			body: `{"messages":[{"role":"system","content":"s"}],"model":"m"}`, empty: true},

		// embed
		{name: "embed, one string", ep: Embed,
			in:   `{"model":"e","input":"hello"}`,
			path: "/v1/embeddings",
			body: `{"input":"hello","model":"e"}`},
		{name: "embed, strings, dimensions, truncate, stream", ep: Embed,
			in:      `{"model":"e","input":["a","b"],"dimensions":256,"truncate":false,"stream":true,"keep_alive":300,"options":{"num_ctx":512,"temperature":0}}`,
			path:    "/v1/embeddings",
			body:    `{"dimensions":256,"input":["a","b"],"model":"e"}`,
			ignored: []string{"options.num_ctx", "options.temperature", "truncate"}, keepAlive: dur(5 * time.Minute)},
		{name: "embed, no input: load", ep: Embed,
			in:   `{"model":"e"}`,
			path: "/v1/embeddings",
			body: `{"input":[],"model":"e"}`, empty: true},
		{name: "embed, empty list", ep: Embed,
			in:   `{"model":"e","input":[]}`,
			path: "/v1/embeddings",
			body: `{"input":[],"model":"e"}`, empty: true},

		// embeddings
		{name: "embeddings, prompt", ep: Embeddings,
			in:   `{"model":"e","prompt":"hello","keep_alive":"1h30m"}`,
			path: "/v1/embeddings",
			body: `{"input":"hello","model":"e"}`, keepAlive: dur(90 * time.Minute)},
		{name: "embeddings, no prompt", ep: Embeddings,
			in:   `{"model":"e"}`,
			path: "/v1/embeddings",
			body: `{"input":"","model":"e"}`, empty: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse(c.ep, []byte(c.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var model struct{ Model string }
			_ = json.Unmarshal([]byte(c.in), &model)
			if r.Endpoint != c.ep || r.Model != model.Model || r.Path != c.path || r.Stream != c.stream || r.Empty != c.empty {
				t.Errorf("got endpoint %v model %q path %q stream %v empty %v; want %v %q %q %v %v",
					r.Endpoint, r.Model, r.Path, r.Stream, r.Empty, c.ep, model.Model, c.path, c.stream, c.empty)
			}
			if string(r.Body) != c.body {
				t.Errorf("body\n got %s\nwant %s", r.Body, c.body)
			}
			if !json.Valid(r.Body) {
				t.Errorf("body is not JSON")
			}
			if (r.KeepAlive == nil) != (c.keepAlive == nil) || (r.KeepAlive != nil && *r.KeepAlive != *c.keepAlive) {
				t.Errorf("keep_alive = %v, want %v", fmtDur(r.KeepAlive), fmtDur(c.keepAlive))
			}
			if !reflect.DeepEqual(r.Ignored, c.ignored) {
				t.Errorf("ignored = %q, want %q", r.Ignored, c.ignored)
			}
		})
	}
}

func fmtDur(d *time.Duration) string {
	if d == nil {
		return "nil"
	}
	return d.String()
}

func TestParseKeepAlive(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
	}{
		{`"5m"`, 5 * time.Minute},
		{`"1h30m"`, 90 * time.Minute},
		{`"0"`, 0},
		{`"0s"`, 0},
		{`"-1"`, -time.Second},
		{`"-1s"`, -time.Second},
		{`"-1m"`, -time.Minute},
		{`" 30 "`, 30 * time.Second},
		{`"1.5"`, 1500 * time.Millisecond},
		{`0`, 0},
		{`-1`, -time.Second},
		{`300`, 5 * time.Minute},
		{`0.5`, 500 * time.Millisecond},
		{`1e300`, time.Duration(1<<63 - 1)},
		{`-1e300`, time.Duration(-1 << 63)},
	}
	for _, c := range cases {
		r, err := Parse(Generate, []byte(`{"model":"m","keep_alive":`+c.in+`}`))
		if err != nil {
			t.Errorf("keep_alive %s: %v", c.in, err)
			continue
		}
		if r.KeepAlive == nil || *r.KeepAlive != c.want {
			t.Errorf("keep_alive %s = %v, want %v", c.in, fmtDur(r.KeepAlive), c.want)
		}
	}
	r, err := Parse(Generate, []byte(`{"model":"m","keep_alive":null}`))
	if err != nil || r.KeepAlive != nil {
		t.Errorf("keep_alive null = %v, %v; want nil", fmtDur(r.KeepAlive), err)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		ep   Endpoint
		in   string
		want string // in the message
	}{
		{"not JSON", Chat, `{"model":`, "invalid JSON"},
		{"an array", Chat, `[1]`, "invalid JSON"},
		{"null", Chat, `null`, "expected an object"},
		{"no model", Chat, `{"messages":[]}`, "model is required"},
		{"empty model", Generate, `{"model":""}`, "model is required"},
		{"model a number", Embed, `{"model":1}`, "model must be a string"},
		{"messages an object", Chat, `{"model":"m","messages":{}}`, "messages must be an array"},
		{"content a number", Chat, `{"model":"m","messages":[{"role":"user","content":1}]}`, "messages: content must not be a number"},
		{"no role", Chat, `{"model":"m","messages":[{"content":"x"}]}`, "messages[0]: role is required"},
		{"image not base64", Chat, `{"model":"m","messages":[{"role":"user","content":"x","images":["!!!!"]}]}`, "images[0]: not base64"},
		{"image empty", Generate, `{"model":"m","prompt":"x","images":[""]}`, "images[0]: empty image"},
		{"images not strings", Generate, `{"model":"m","prompt":"x","images":[1]}`, "images must be"},
		{"arguments an array", Chat, `{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":[1]}}]}]}`, "arguments must be an object"},
		{"tools an object", Chat, `{"model":"m","tools":{}}`, "tools must be an array"},
		{"stream a string", Chat, `{"model":"m","stream":"yes"}`, "stream must be true or false"},
		{"raw a string", Generate, `{"model":"m","raw":"yes"}`, "raw must be true or false"},
		{"prompt a number", Generate, `{"model":"m","prompt":1}`, "prompt must be a string"},
		{"keep_alive a word", Chat, `{"model":"m","keep_alive":"forever"}`, "keep_alive"},
		{"keep_alive a bool", Chat, `{"model":"m","keep_alive":true}`, "keep_alive"},
		{"keep_alive an object", Embed, `{"model":"m","keep_alive":{}}`, "keep_alive"},
		{"format xml", Chat, `{"model":"m","format":"xml"}`, "format"},
		{"format a number", Chat, `{"model":"m","format":1}`, "format"},
		{"think a word", Chat, `{"model":"m","think":"very"}`, "think"},
		{"think a number", Generate, `{"model":"m","think":1}`, "think"},
		{"options an array", Chat, `{"model":"m","options":[]}`, "options must be an object"},
		{"temperature a string", Chat, `{"model":"m","options":{"temperature":"hot"}}`, "options.temperature must be a number"},
		{"num_predict a fraction", Chat, `{"model":"m","options":{"num_predict":1.5}}`, "options.num_predict must be a whole number"},
		{"seed a string", Chat, `{"model":"m","options":{"seed":"1"}}`, "options.seed must be a number"},
		{"stop a number", Chat, `{"model":"m","options":{"stop":1}}`, "options.stop"},
		{"input a number", Embed, `{"model":"m","input":1}`, "input must be a string or an array of strings"},
		{"input numbers", Embed, `{"model":"m","input":[[1,2]]}`, "input must be"},
		{"dimensions a string", Embed, `{"model":"m","input":"x","dimensions":"256"}`, "dimensions must be a number"},
		{"prompt an array", Embeddings, `{"model":"m","prompt":["x"]}`, "prompt must be a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse(c.ep, []byte(c.in))
			if err == nil {
				t.Fatalf("Parse accepted it: %s", r.Body)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}
