package main

import (
	"reflect"
	"strings"
	"testing"
)

// TestLlamaServerPathsWithoutV1: llama-server answers its OpenAI
// endpoints without /v1 too, and so does the mock: the same answer as
// /v1's for the same request (id and time aside), streams included.
func TestLlamaServerPathsWithoutV1(t *testing.T) {
	f := start(t, "-tokens", "2", "-stream-interval", "1ms", "-dim", "4", "-model", "llama")
	f.waitReady()
	for _, c := range []struct{ path, body string }{
		{"/chat/completions", `{"model":"llama","messages":[{"role":"user","content":"hi there"}]}`},
		{"/completions", `{"model":"llama","prompt":"once upon"}`},
		{"/embeddings", `{"model":"llama","input":["a","b c"]}`},
		{"/rerank", `{"model":"llama","query":"q","documents":["x","q y","z"],"top_n":2}`},
	} {
		resp, body := f.postJSON(c.path, c.body)
		_, want := f.postJSON("/v1"+c.path, c.body)
		got, exp := decodeJSON(t, body), decodeJSON(t, want)
		for _, v := range []map[string]any{got, exp} {
			delete(v, "id")
			delete(v, "created")
		}
		if resp.StatusCode != 200 || !reflect.DeepEqual(got, exp) {
			t.Errorf("%s: %d %s\n/v1%s: %s", c.path, resp.StatusCode, body, c.path, want)
		}
	}
	for _, path := range []string{"/chat/completions", "/completions"} {
		const req = `{"model":"llama","stream":true,"prompt":"x","messages":[{"role":"user","content":"x"}]}`
		_, body := f.postJSON(path, req)
		_, want := f.postJSON("/v1"+path, req)
		got, exp := streamEvents(t, string(body)), streamEvents(t, string(want))
		if len(got) < 3 || !reflect.DeepEqual(got, exp) {
			t.Errorf("%s stream: %q\n/v1%s: %q", path, body, path, want)
		}
	}
	// Counted as /v1's are: 4 and 4 answers, 2 and 2 streams; 2 tokens
	// in each of the 2+2 whole completions and the 2+2 streams.
	if st := f.stats(); st.Requests != 12 || st.Tokens != 16 {
		t.Errorf("stats: %d requests, %d tokens; want 12, 16", st.Requests, st.Tokens)
	}
}

// streamEvents decodes an OpenAI stream's events, id and time aside, and
// fails the test unless it ends with [DONE].
func streamEvents(t *testing.T, body string) []namedEvent {
	t.Helper()
	rest, ok := strings.CutSuffix(body, "data: [DONE]\n\n")
	if !ok {
		t.Fatalf("no [DONE] at the end of %q", body)
	}
	events := namedEvents(t, rest)
	for _, e := range events {
		delete(e.data, "id")
		delete(e.data, "created")
	}
	return events
}

// TestApplyTemplate: /apply-template gives, as llama-server does, the one
// prompt the chat's messages make under the model's template (ChatML in
// the mock), ending where the answer would begin; it generates nothing.
func TestApplyTemplate(t *testing.T) {
	f := start(t)
	f.waitReady()
	resp, body := f.postJSON("/apply-template", `{"messages":[{"role":"system","content":"be brief"},`+
		`{"role":"user","content":[{"type":"text","text":"hi"}]}]}`)
	want := "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
	if v := decodeJSON(t, body); resp.StatusCode != 200 || v["prompt"] != want || len(v) != 1 {
		t.Errorf("%d %s, want prompt %q", resp.StatusCode, body, want)
	}
	resp, body = f.postJSON("/apply-template", `{"messages":[]}`)
	if _, code := apiError(t, body); resp.StatusCode != 400 || code != "missing_messages" {
		t.Errorf("no messages: %d %s", resp.StatusCode, body)
	}
	if st := f.stats(); st.Requests != 2 || st.Tokens != 0 {
		t.Errorf("stats: %d requests, %d tokens; want 2, 0", st.Requests, st.Tokens)
	}
	g := start(t, "-startup", "1h")
	if resp, _ := g.postJSON("/apply-template", `{"messages":[{"role":"user","content":"x"}]}`); resp.StatusCode != 503 {
		t.Errorf("/apply-template while loading: %d", resp.StatusCode)
	}
}
