package proxy_test

import (
	"strings"
	"testing"
)

// TestLlamaServerPathsAnswered: llama-server's paths that the mock used to
// answer 404 (its OpenAI endpoints without /v1, /rerank and
// /apply-template) go through hotswap to the backend, as written, and are
// answered there in their shapes.
func TestLlamaServerPathsAnswered(t *testing.T) {
	s := newStack(t, splitConfig)
	for _, c := range []struct{ path, body, want string }{
		{"/chat/completions", `{"model":"plain","messages":[{"role":"user","content":"hi"}]}`, `"object":"chat.completion"`},
		{"/completions", `{"model":"plain","prompt":"hi"}`, `"object":"text_completion"`},
		{"/embeddings", `{"model":"plain","input":"hi"}`, `"embedding":[`},
		{"/rerank", `{"model":"plain","query":"q","documents":["a","b"]}`, `"relevance_score":`},
		{"/apply-template", `{"model":"plain","messages":[{"role":"user","content":"hi"}]}`, `"prompt":"\u003c|im_start|\u003euser\nhi`},
	} {
		r := s.do("POST", c.path, "application/json", []byte(c.body))
		if r.status != 200 || r.header.Get("X-Mock-Path") != c.path || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %d, reached the backend as %q: %s", c.path, r.status, r.header.Get("X-Mock-Path"), r.body)
		}
	}
}
