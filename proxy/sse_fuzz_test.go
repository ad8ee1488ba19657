package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// sseScript is what the scripted backend answers the next stream with.
type sseScript struct {
	data []byte
	cut  bool // the connection is cut after data, without the last chunk
	step int  // bytes per chunk (at least 1)
}

// scriptedSSE is a backend that answers GET /health with 200 and any POST
// with the script it was last given, as an event stream in chunks: bytes
// that no real backend was asked to produce, so that hotswap is seen to
// pass them on as they are.
type scriptedSSE struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	next  sseScript
	conns map[net.Conn]bool
}

func newScriptedSSE(tb testing.TB) *scriptedSSE {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &scriptedSSE{ln: ln, conns: map[net.Conn]bool{}}
	tb.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	b.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[conn] = true
			b.mu.Unlock()
			b.wg.Go(func() { b.serve(conn) })
		}
	})
	return b
}

func (b *scriptedSSE) serve(conn net.Conn) {
	defer func() {
		conn.Close()
		b.mu.Lock()
		delete(b.conns, conn)
		b.mu.Unlock()
	}()
	br := bufio.NewReader(conn)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if req.Method == http.MethodGet {
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
			continue
		}
		b.mu.Lock()
		sc := b.next
		b.mu.Unlock()
		w := bufio.NewWriter(conn)
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for rest := sc.data; len(rest) > 0; {
			n := min(sc.step, len(rest))
			fmt.Fprintf(w, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
			w.Flush()
		}
		if sc.cut {
			w.Flush()
			return
		}
		fmt.Fprintf(w, "0\r\n\r\n")
		w.Flush()
	}
}

// FuzzSSEPassThrough: whatever bytes a backend streams, the client gets
// exactly those; and a stream the backend cuts ends, after what came, with
// one error event in OpenAI's format, never a bare cut.
func FuzzSSEPassThrough(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"), false, uint8(7))
	f.Add([]byte("data: {\"choices\":[]}\n\n"), true, uint8(1))
	f.Add([]byte(": comment\r\n\r\nevent: x\ndata: a\ndata: b\n\n"), false, uint8(200))
	f.Add([]byte{}, false, uint8(3))
	f.Add([]byte{}, true, uint8(3))
	f.Add([]byte("\x00\xff\r\n0\r\n\r\n"), false, uint8(2))
	backend := newScriptedSSE(f)
	// The backend process is a mock that never becomes ready itself: the
	// health hotswap polls, and the answers, are the scripted backend's.
	s := newStack(f, fmt.Sprintf(`
ports: 27000-27099
upstream_keepalive: 3s
models:
  sse:
    cmd: MOCK -listen 127.0.0.1:0 -model sse -hang
    proxy: http://%s
`, backend.ln.Addr()))
	body := `{"model":"sse","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	f.Fuzz(func(t *testing.T, data []byte, cut bool, step uint8) {
		backend.mu.Lock()
		backend.next = sseScript{data: data, cut: cut, step: max(int(step), 1)}
		backend.mu.Unlock()
		resp, err := s.client.Post(s.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("status %d, %v: %q", resp.StatusCode, err, got)
		}
		if !cut {
			if !bytes.Equal(got, data) {
				t.Fatalf("sent %q, the client got %q", data, got)
			}
			return
		}
		rest, ok := bytes.CutPrefix(got, data)
		if !ok {
			t.Fatalf("sent %q then cut, the client got %q", data, got)
		}
		ev, ok := bytes.CutPrefix(rest, []byte("\n\ndata: "))
		ev, ok2 := bytes.CutSuffix(ev, []byte("\n\n"))
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if !ok || !ok2 || json.Unmarshal(ev, &e) != nil || e.Error.Code == "" {
			t.Fatalf("a cut stream ended with %q, not one error event", rest)
		}
	})
}
