package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawConn is one client connection to the mock, driven by hand so that a
// test sees exactly what happens to it.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (f *fixture) dial() *rawConn {
	f.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return &rawConn{t: f.t, conn: conn, br: bufio.NewReader(conn)}
}

// do sends one request on the connection and reads the whole answer.
func (c *rawConn) do(method, path, body string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, "http://mock"+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(c.conn); err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: the body did not end cleanly: %v", method, path, err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// closed waits up to timeout for the server to close the connection.
func (c *rawConn) closed(timeout time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	_, err := c.br.ReadByte()
	return errors.Is(err, io.EOF)
}

// TestCloseAfterStream: with -close-after-stream, every streamed answer
// ends cleanly and the connection is closed after it, although nothing in
// the answer said so; plain answers keep the connection, as llama-server
// does.
func TestCloseAfterStream(t *testing.T) {
	f := start(t, "-close-after-stream", "-stream-interval", "1ms", "-tokens", "3")
	f.waitReady()
	streams := []struct{ path, body, last string }{
		{"/v1/chat/completions", `{"model":"m","stream":true}`, "data: [DONE]"},
		{"/v1/completions", `{"model":"m","stream":true,"prompt":"x"}`, "data: [DONE]"},
		{"/v1/responses", `{"model":"m","stream":true,"input":"x"}`, `"type":"response.completed"`},
		{"/v1/messages", `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`, `"type":"message_stop"`},
		{"/completion", `{"prompt":"x","stream":true}`, `"stop":true`},
	}
	for _, s := range streams {
		c := f.dial()
		if resp, _ := c.do("POST", "/v1/embeddings", `{"input":"x"}`); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("plain answer: %d, close %v", resp.StatusCode, resp.Close)
		}
		resp, body := c.do("POST", s.path, s.body)
		if resp.StatusCode != 200 || !strings.Contains(body, s.last) {
			t.Errorf("%s: %d %q", s.path, resp.StatusCode, body)
		}
		if resp.Close || resp.Header.Get("Connection") != "" {
			t.Errorf("%s: the answer announced the close (%v, %q)", s.path, resp.Close, resp.Header.Get("Connection"))
		}
		if !c.closed(5 * time.Second) {
			t.Errorf("%s: the connection stayed open after the stream", s.path)
		}
	}
	// Without the flag, the connection is kept.
	g := start(t, "-stream-interval", "1ms", "-tokens", "3")
	g.waitReady()
	c := g.dial()
	c.do("POST", "/v1/chat/completions", `{"model":"m","stream":true}`)
	if resp, _ := c.do("POST", "/v1/embeddings", `{"input":"x"}`); resp.StatusCode != 200 {
		t.Errorf("the kept connection answered %d", resp.StatusCode)
	}
}

// TestIdleTimeout: -idle-timeout announces itself in a Keep-Alive header
// and closes a connection left idle, but not one in use.
func TestIdleTimeout(t *testing.T) {
	f := start(t, "-idle-timeout", "1s")
	f.waitReady()
	c := f.dial()
	began := time.Now()
	resp, _ := c.do("GET", "/v1/models", "")
	if got := resp.Header.Get("Keep-Alive"); got != "timeout=1, max=100" {
		t.Errorf("Keep-Alive %q", got)
	}
	if resp, _ := c.do("GET", "/v1/models", ""); resp.StatusCode != 200 {
		t.Errorf("second request on the connection: %d", resp.StatusCode)
	}
	if !c.closed(10 * time.Second) {
		t.Fatal("the idle connection was never closed")
	}
	// In the end the stats request's is the only connection left open:
	// every idle one was closed (the one waitReady left included).
	eventually(t, "idle connections closed", func() bool {
		st := f.stats()
		return st.Connections >= 2 && st.OpenConns == 1
	})
	if idle := time.Since(began); idle < 900*time.Millisecond {
		t.Errorf("closed after %s, before the idle timeout", idle)
	}
}

// TestQuiet: -quiet prints nothing, not even when ready, and the stats say
// when it became ready, so that tests can measure how soon that is seen.
func TestQuiet(t *testing.T) {
	began := time.Now()
	f := start(t, "-quiet", "-startup", "100ms", "-progress-interval", "10ms")
	f.waitReady()
	if out := f.stdout.String() + f.stderr.String(); out != "" {
		t.Errorf("printed %q", out)
	}
	at := time.Unix(0, f.stats().ReadyAt)
	if at.Before(began.Add(100*time.Millisecond)) || time.Since(at) > time.Minute {
		t.Errorf("ready at %s, began %s", at, began)
	}
}

// TestCORSEchoesTheOrigin: with -cors, as llama-server, any origin is let
// in; without it, none is named.
func TestCORSEchoesTheOrigin(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{{[]string{"-cors"}, "http://page.example"}, {nil, ""}} {
		f := start(t, c.args...)
		req, _ := http.NewRequest("GET", f.url+"/v1/models", nil)
		req.Header.Set("Origin", "http://page.example")
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != c.want {
			t.Errorf("%v: Access-Control-Allow-Origin %q, want %q", c.args, got, c.want)
		}
	}
}

// TestGzip: with -gzip, JSON answers to a client that accepts gzip are
// gzipped (errors too); event streams, and answers to a client that does
// not ask, are not.
func TestGzip(t *testing.T) {
	f := start(t, "-gzip", "-tokens", "3", "-stream-interval", "1ms")
	f.waitReady()
	post := func(body, acceptEncoding string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", f.url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if acceptEncoding != "" {
			// Set by hand, Go's client leaves the body compressed.
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct {
		body, accept string
		gzipped      bool
	}{
		{chat, "gzip", true},
		{chat, "br;q=1, GZIP;q=0.5", true},
		{`{"model":"m","messages":"no"}`, "gzip", true}, // an error
		{chat, "identity", false},
		{`{"model":"m","stream":true,"messages":[]}`, "gzip", false},
	} {
		resp, b := post(c.body, c.accept)
		if got := resp.Header.Get("Content-Encoding") == "gzip"; got != c.gzipped {
			t.Errorf("%s with Accept-Encoding %q: Content-Encoding %q", c.body, c.accept, resp.Header.Get("Content-Encoding"))
			continue
		}
		if c.gzipped {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", c.body, err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", c.body, err)
			}
		}
		if !json.Valid(b) && !strings.Contains(string(b), "data: [DONE]") {
			t.Errorf("%s with Accept-Encoding %q: %q", c.body, c.accept, b)
		}
	}
}
