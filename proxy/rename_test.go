package proxy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// renameAll feeds src to a new renamer in pieces of at most size bytes
// (0: whole).
func renameAll(name string, sse bool, src []byte, size int) []byte {
	r := renamer{name: name, sse: sse}
	if size <= 0 {
		return r.feed(nil, src)
	}
	var out []byte
	for len(src) > 0 {
		n := min(size, len(src))
		out = r.feed(out, src[:n])
		src = src[n:]
	}
	return out
}

// checkSplits renames src whole, in two pieces at every point, and a byte
// at a time, and checks that all agree with want.
func checkSplits(t *testing.T, name string, sse bool, src, want string) {
	t.Helper()
	if got := renameAll(name, sse, []byte(src), 0); string(got) != want {
		t.Fatalf("whole:\n got %s\nwant %s", got, want)
	}
	if got := renameAll(name, sse, []byte(src), 1); string(got) != want {
		t.Fatalf("a byte at a time:\n got %s\nwant %s", got, want)
	}
	for i := 1; i < len(src); i++ {
		r := renamer{name: name, sse: sse}
		got := r.feed(nil, []byte(src[:i]))
		got = r.feed(got, []byte(src[i:]))
		if string(got) != want {
			t.Fatalf("split at %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestRenameJSON(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"chat completion",
			`{"id":"c1","object":"chat.completion","created":1,"model":"qwen3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"the \"model\": \"x\""}}],"usage":{"total_tokens":3}}`,
			`{"id":"c1","object":"chat.completion","created":1,"model":"qwen","choices":[{"index":0,"message":{"role":"assistant","content":"the \"model\": \"x\""}}],"usage":{"total_tokens":3}}`},
		{"spaced", "{\n  \"model\" :  \"up\" ,\n  \"x\": 1\n}\n", "{\n  \"model\" :  \"qwen\" ,\n  \"x\": 1\n}\n"},
		{"escaped value", `{"model":"a\"b\\","n":1}`, `{"model":"qwen","n":1}`},
		{"model last", `{"data":[{"embedding":[0.1,-2e-3]}],"model":"up"}`, `{"data":[{"embedding":[0.1,-2e-3]}],"model":"qwen"}`},
		{"not a string", `{"model":null,"x":{"model":"up"}}`, `{"model":null,"x":{"model":"up"}}`},
		{"deeper models stay", `{"choices":[{"model":"up"}],"data":{"model":"up"}}`, `{"choices":[{"model":"up"}],"data":{"model":"up"}}`},
		{"a value that says model", `{"object":"model","id":"model","list":["model","up"],"model":"up"}`,
			`{"object":"model","id":"model","list":["model","up"],"model":"qwen"}`},
		{"Anthropic message", `{"type":"message_start","message":{"id":"m","model":"up","content":[]}}`,
			`{"type":"message_start","message":{"id":"m","model":"qwen","content":[]}}`},
		{"Responses", `{"type":"response.created","response":{"id":"r","model":"up"},"model":"up"}`,
			`{"type":"response.created","response":{"id":"r","model":"qwen"},"model":"qwen"}`},
		{"message not an object", `{"message":"hi","x":{"model":"up"}}`, `{"message":"hi","x":{"model":"up"}}`},
		{"message in an array", `{"message":[{"model":"up"}]}`, `{"message":[{"model":"up"}]}`},
		{"long keys", `{"modelmodel":"up","messages":{"model":"up"},"model":"up"}`, `{"modelmodel":"up","messages":{"model":"up"},"model":"qwen"}`},
		{"escaped key", `{"mod\u0065l":"up"}`, `{"mod\u0065l":"up"}`},
		{"not an object", `["model","up"]`, `["model","up"]`},
		{"error", `{"error":{"message":"bad","type":"invalid_request_error","code":400}}`,
			`{"error":{"message":"bad","type":"invalid_request_error","code":400}}`},
		{"after the end", `{"model":"up"} {"model":"up"}`, `{"model":"qwen"} {"model":"up"}`},
	} {
		t.Run(c.name, func(t *testing.T) { checkSplits(t, "qwen", false, c.in, c.want) })
	}
}

func TestRenameSSE(t *testing.T) {
	in := ": waiting for qwen: loading, 1s\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"qwen3-8b\",\"choices\":[{\"delta\":{\"content\":\"model\"}}]}\n\n" +
		"data:{\"model\":\"qwen3-8b\"}\r\n\r\n" +
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"qwen3-8b\"}}\n\n" +
		"id: 7\nretry: 10\ndata: {\"error\":{\"message\":\"the model `qwen3-8b` is busy\"}}\n\n" +
		"data: not json \"model\":\"x\"\n\n" +
		"data: [DONE]\n\n"
	want := ": waiting for qwen: loading, 1s\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"my \\\"qwen\\\"\",\"choices\":[{\"delta\":{\"content\":\"model\"}}]}\n\n" +
		"data:{\"model\":\"my \\\"qwen\\\"\"}\r\n\r\n" +
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"my \\\"qwen\\\"\"}}\n\n" +
		"id: 7\nretry: 10\ndata: {\"error\":{\"message\":\"the model `qwen3-8b` is busy\"}}\n\n" +
		"data: not json \"model\":\"x\"\n\n" +
		"data: [DONE]\n\n"
	checkSplits(t, `my "qwen"`, true, in, want)
}

// A data line whose JSON never ends (the stream was cut) leaves the next
// line's JSON to be read afresh.
func TestRenameSSECutLine(t *testing.T) {
	checkSplits(t, "q", true, "data: {\"a\":\"unterminated\n\ndata: {\"model\":\"up\"}\n\n", "data: {\"a\":\"unterminated\n\ndata: {\"model\":\"q\"}\n\n")
	checkSplits(t, "q", true, "datum: {\"model\":\"up\"}\n", "datum: {\"model\":\"up\"}\n")
	checkSplits(t, "q", true, " data: {\"model\":\"up\"}\n", " data: {\"model\":\"up\"}\n")
}

// refRename is what renaming means, on a decoded answer.
func refRename(v any, name string) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if _, ok := obj["model"].(string); ok {
		obj["model"] = name
	}
	for _, k := range []string{"message", "response"} {
		if inner, ok := obj[k].(map[string]any); ok {
			if _, ok := inner["model"].(string); ok {
				inner["model"] = name
			}
		}
	}
	return obj
}

func decodeAny(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// FuzzRename: a valid JSON answer stays valid, with its model (and those
// of message and response) renamed and nothing else changed, however the
// reads split it; as an event stream's data line too.
func FuzzRename(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s), uint8(3))
	}
	for _, s := range []string{`{"model":"up","message":{"model":"up"},"response":{"x":[{"model":1}],"model":"u\"p"}}`,
		`{"message":1,"model":2}`, `{"message":{"message":{"model":"x"}}}`, `{"a":[{"b":{"model":"x"}}],"model":"y"}`} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, body []byte, size uint8) {
		if !json.Valid(body) {
			return
		}
		// Keys that are the same once unescaped are left out: which one a
		// decoder keeps is not for renaming to decide.
		if bytes.Contains(body, []byte(`\u`)) {
			return
		}
		want, err := decodeAny(body)
		if err != nil {
			t.Fatal(err)
		}
		want = refRename(want, "qwen")
		out := renameAll("qwen", false, body, int(size))
		if !json.Valid(out) {
			t.Fatalf("%q renamed is not JSON: %q", body, out)
		}
		got, err := decodeAny(out)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %v (%q)\nwant %v", body, got, out, want)
		}
		if bytes.ContainsAny(body, "\r\n") {
			return
		}
		sse := renameAll("qwen", true, []byte("data: "+string(body)+"\n\n"), int(size))
		if want := "data: " + string(out) + "\n\n"; string(sse) != want {
			t.Fatalf("as an event:\n got %q\nwant %q", sse, want)
		}
	})
}

func BenchmarkRename(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"qwen3-8b",` +
		`"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}` + "\n\n")
	var emb strings.Builder
	emb.WriteString(`{"object":"list","model":"qwen3-8b","data":[{"object":"embedding","index":0,"embedding":[`)
	for i := range 4096 {
		if i > 0 {
			emb.WriteByte(',')
		}
		emb.WriteString("-0.012345678")
	}
	emb.WriteString(`]}],"usage":{"prompt_tokens":1,"total_tokens":1}}`)
	for _, c := range []struct {
		name string
		sse  bool
		in   []byte
	}{{"sse-chunk", true, chunk}, {"embedding-50KB", false, []byte(emb.String())}} {
		b.Run(c.name, func(b *testing.B) {
			out := make([]byte, 0, len(c.in)+64)
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				r := renamer{name: "qwen", sse: c.sse}
				out = r.feed(out[:0], c.in)
			}
		})
	}
}

// Only JSON and event streams, as they are, are renamed: not audio, and
// not a compressed answer.
func TestRenames(t *testing.T) {
	for _, c := range []struct {
		ct, ce string
		want   bool
	}{
		{"application/json", "", true}, {"application/json; charset=utf-8", "identity", true},
		{"text/event-stream", "", true}, {"audio/mpeg", "", false}, {"text/plain", "", false},
		{"application/json", "gzip", false}, {"text/event-stream", "br", false},
	} {
		var resp fasthttp.Response
		resp.Header.SetContentType(c.ct)
		if c.ce != "" {
			resp.Header.SetContentEncoding(c.ce)
		}
		if got := renames(&resp); got != c.want {
			t.Errorf("%s, %q: renames %v", c.ct, c.ce, got)
		}
	}
}
