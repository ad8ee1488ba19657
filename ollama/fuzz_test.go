package ollama

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzAnswerFeed feeds any bytes, cut at a point the input picks, as any
// endpoint's stream: Feed and End never panic, every line they write is a
// JSON object, and there is at most one final line, the last.
func FuzzAnswerFeed(f *testing.F) {
	for _, c := range streamCases() {
		f.Add(uint8(c.ep), uint16(len(c.in)/2), c.end != nil, []byte(c.in))
	}
	f.Add(uint8(Chat), uint16(3), false, []byte("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":-5,\"function\":{\"arguments\":{\"a\":1}}}]}}]}\n"))
	f.Add(uint8(Generate), uint16(0), true, []byte("data: {\"choices\":[{\"delta\":{\"content\":\"\\u0000\\ud800\"}}],\"usage\":{\"prompt_tokens\":-1}}\n"))
	f.Fuzz(func(t *testing.T, ep uint8, cut uint16, broken bool, in []byte) {
		a := NewAnswer(&Request{Endpoint: Endpoint(ep % 4), Model: "m\x00\xff"}, t0, newClock().now)
		at := min(int(cut), len(in))
		out := a.Feed(nil, in[:at])
		out = a.Feed(out, in[at:])
		var err error
		if broken {
			err = errors.New("cut")
		}
		out = a.End(out, err)
		if !a.Done() {
			t.Error("not done after End")
		}
		checkLines(t, out)
	})
}

// FuzzParse parses any body as any endpoint: Parse never panics, and a body
// it accepts yields a JSON object Body, a model and a path.
func FuzzParse(f *testing.F) {
	for _, c := range []struct {
		ep Endpoint
		in string
	}{
		{Chat, `{"model":"m","messages":[{"role":"user","content":"hi","images":["` + pngB64 + `"]}],"options":{"temperature":0.5,"num_ctx":1},"think":"low","format":{"type":"object"},"keep_alive":"5m"}`},
		{Chat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","tool_name":"f","content":"1"}],"tools":[{"type":"function"}]}`},
		{Generate, `{"model":"m","prompt":"p","system":"s","raw":true,"suffix":"x","keep_alive":-1,"stream":false}`},
		{Generate, `{"model":"m","prompt":"p","images":["` + webpB64 + `"],"format":"json","options":{"num_predict":-2,"stop":"x"}}`},
		{Embed, `{"model":"m","input":["a","b"],"dimensions":3,"truncate":true}`},
		{Embeddings, `{"model":"m","prompt":"x","options":{"seed":1}}`},
	} {
		f.Add(uint8(c.ep), []byte(c.in))
	}
	f.Fuzz(func(t *testing.T, ep uint8, body []byte) {
		r, err := Parse(Endpoint(ep%4), body)
		if err != nil {
			return
		}
		var v map[string]any
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Fatalf("Body is not a JSON object: %v: %s", err, r.Body)
		}
		if r.Model == "" || v["model"] != r.Model || r.Path == "" {
			t.Fatalf("model %q, path %q, body %s", r.Model, r.Path, r.Body)
		}
	})
}
