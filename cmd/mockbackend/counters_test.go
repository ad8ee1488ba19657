package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
)

// streamChunks posts a streamed request and returns its events' data, the
// last being "[DONE]" for the OpenAI APIs.
func (f *fixture) streamChunks(path, body string) []string {
	f.t.Helper()
	resp, err := f.client.Post(f.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		f.t.Fatalf("%s: %d", path, resp.StatusCode)
	}
	events, err := readEvents(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	data := make([]string, len(events))
	for i, e := range events {
		data[i] = e.data
	}
	return data
}

// contentChunks counts the chunks of a chat or text stream that carry
// content, and finds its usage chunk, if any. It fails the test if a
// usage appears anywhere but in a last chunk, before [DONE], with no
// choices.
func contentChunks(t *testing.T, data []string) (n int, u *usage) {
	t.Helper()
	if len(data) == 0 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("the stream does not end with [DONE]: %q", data)
	}
	for i, d := range data[:len(data)-1] {
		var c completion
		if err := json.Unmarshal([]byte(d), &c); err != nil {
			t.Fatalf("chunk %d %s: %v", i, d, err)
		}
		if c.Usage != nil {
			if i != len(data)-2 || !strings.Contains(d, `"choices":[]`) || len(c.Choices) != 0 {
				t.Errorf("usage in chunk %d of %d, or with choices: %s", i, len(data), d)
			}
			u = c.Usage
			continue
		}
		if len(c.Choices) != 1 {
			t.Fatalf("chunk %d: %s", i, d)
		}
		ch := c.Choices[0]
		if (ch.Delta != nil && ch.Delta.Content != "") || (ch.Text != nil && *ch.Text != "") {
			n++
		}
	}
	return n, u
}

// TestStreamIncludeUsage: stream_options.include_usage adds a last chunk,
// before [DONE], with no choices and the usage of the whole answer; its
// completion_tokens is the number of content chunks sent.
func TestStreamIncludeUsage(t *testing.T) {
	f := start(t, "-tokens", "4", "-stream-interval", "1ms")
	f.waitReady()
	for _, c := range []struct {
		path, body string
		tokens     int
	}{
		{"/v1/chat/completions", `"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"ping pong"}]`, 4},
		{"/v1/chat/completions", `"max_tokens":2,"messages":[{"role":"user","content":"ping"}]`, 2},
		{"/v1/completions", `"prompt":"once upon a time"`, 4},
	} {
		// The usage a whole answer gets is the one to match.
		_, body := f.postJSON(c.path, `{"model":"m",`+c.body+`}`)
		var whole completion
		if err := json.Unmarshal(body, &whole); err != nil || whole.Usage == nil {
			t.Fatalf("%s: %s", c.path, body)
		}

		data := f.streamChunks(c.path, `{"model":"m","stream":true,"stream_options":{"include_usage":true},`+c.body+`}`)
		n, u := contentChunks(t, data)
		switch {
		case n != c.tokens:
			t.Errorf("%s %s: %d content chunks, want %d", c.path, c.body, n, c.tokens)
		case u == nil:
			t.Errorf("%s %s: no usage chunk: %q", c.path, c.body, data)
		case u.CompletionTokens != n || *u != *whole.Usage:
			t.Errorf("%s %s: usage %+v, with %d content chunks; a whole answer's is %+v", c.path, c.body, *u, n, *whole.Usage)
		}

		// Without include_usage, or with it false, no usage at all.
		for _, opts := range []string{``, `"stream_options":{"include_usage":false},`, `"stream_options":null,`} {
			data := f.streamChunks(c.path, `{"model":"m","stream":true,`+opts+c.body+`}`)
			if n, u := contentChunks(t, data); u != nil || n != c.tokens {
				t.Errorf("%s %s%s: usage %+v, %d content chunks", c.path, opts, c.body, u, n)
			}
			for _, d := range data {
				if strings.Contains(d, `"usage"`) {
					t.Errorf("%s %s%s: usage in %s", c.path, opts, c.body, d)
				}
			}
		}
	}
}

// TestErrorEvery: every Nth model POST, and no GET, is answered at once
// with an OpenAI error of the status asked for, a stream included.
func TestErrorEvery(t *testing.T) {
	f := start(t, "-error-every", "3", "-error-status", "503", "-tokens", "2", "-stream-interval", "1ms")
	f.waitReady()
	posts := []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`},
		{"/v1/embeddings", `{"input":"x"}`},
		{"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`},
		{"/v1/completions", `{"model":"m","prompt":"x"}`},
		{"/v1/completions", `{"model":"m","stream":true,"prompt":"x"}`},
		{"/v1/embeddings", `{"input":"x"}`},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`},
	}
	for i, p := range posts {
		f.do("GET", "/v1/models", "", nil) // not counted
		n := i + 1
		resp, body := f.postJSON(p.path, p.body)
		if n%3 != 0 {
			if resp.StatusCode != 200 {
				t.Errorf("POST %d %s: %d %s", n, p.path, resp.StatusCode, body)
			}
			continue
		}
		typ, code := apiError(t, body)
		if resp.StatusCode != 503 || typ != "server_error" || code != "mock_error" ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("POST %d %s: %d %s (%s)", n, p.path, resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(string(body), "-error-every 3") {
			t.Errorf("POST %d: message %s", n, body)
		}
	}
	if st := f.stats(); st.Errors != 2 || st.Requests != len(posts) || st.InFlight != 0 {
		t.Errorf("stats %+v, want 2 errors of %d requests", st, len(posts))
	}

	// The default status is 500; without the flag, no errors.
	g := start(t, "-error-every", "1")
	g.waitReady()
	if resp, body := g.postJSON("/v1/embeddings", `{"input":"x"}`); resp.StatusCode != 500 {
		t.Errorf("default -error-status: %d %s", resp.StatusCode, body)
	}
	h := start(t)
	h.waitReady()
	for range 3 {
		h.postJSON("/v1/embeddings", `{"input":"x"}`)
	}
	if st := h.stats(); st.Errors != 0 {
		t.Errorf("errors without -error-every: %+v", st)
	}
}

// TestStatsCountTokens: the stats count the completion tokens that chat
// and text completions sent, whole or streamed, and nothing else's.
func TestStatsCountTokens(t *testing.T) {
	f := start(t, "-tokens", "5", "-stream-interval", "1ms")
	f.waitReady()
	want := 0
	for _, c := range []struct {
		path, body string
	}{
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`},
		{"/v1/completions", `{"model":"m","prompt":"x","max_tokens":2}`},
		{"/v1/chat/completions", `{"model":"m","max_completion_tokens":3,"messages":[{"role":"user","content":"x"}]}`},
	} {
		_, body := f.postJSON(c.path, c.body)
		var out completion
		if err := json.Unmarshal(body, &out); err != nil || out.Usage == nil {
			t.Fatalf("%s: %s", c.path, body)
		}
		want += out.Usage.CompletionTokens
	}
	for _, c := range []struct {
		path, body string
	}{
		{"/v1/chat/completions", `{"model":"m","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"x"}]}`},
		{"/v1/completions", `{"model":"m","stream":true,"prompt":"x"}`},
		{"/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
	} {
		n, _ := contentChunks(t, f.streamChunks(c.path, c.body))
		want += n
	}
	if want != 5+2+3+3+5+5 {
		t.Fatalf("the answers had %d tokens", want)
	}
	// Other APIs' tokens are not counted.
	f.postJSON("/v1/embeddings", `{"input":"x y z"}`)
	f.postJSON("/completion", `{"prompt":"x"}`)
	f.streamChunks("/completion", `{"prompt":"x","stream":true}`)
	f.postJSON("/v1/responses", `{"model":"m","input":"x"}`)
	f.postJSON("/v1/messages", `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"x"}]}`)
	if st := f.stats(); st.Tokens != want {
		t.Errorf("stats count %d tokens, the answers had %d", st.Tokens, want)
	}
}

// TestStatsCountAbandonedStream: a stream the client hangs up on counts
// the tokens sent before it stopped, not the whole answer.
func TestStatsCountAbandonedStream(t *testing.T) {
	const total = 100000
	f := start(t, "-tokens", "100000", "-stream-interval", "2ms")
	f.waitReady()
	resp, err := f.client.Post(f.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	const read = 3
	got := 0
	br := bufio.NewReader(resp.Body)
	for got < read {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, `"content":"tok`) {
			got++
		}
	}
	resp.Body.Close()
	eventually(t, "the stream to stop", func() bool { return f.stats().InFlight == 0 })
	if st := f.stats(); st.Tokens < read || st.Tokens >= total {
		t.Errorf("stats count %d tokens for a stream left after %d of %d", st.Tokens, read, total)
	}
}
