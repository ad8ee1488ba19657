package main

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// writeLog is a listener whose connections record every write the mock
// makes to them, so that a test sees how an answer went out.
type writeLog struct {
	net.Listener
	mu    sync.Mutex
	conns []*loggedConn
}

func (l *writeLog) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &loggedConn{Conn: c, tcp: c.(*net.TCPConn)}
	l.mu.Lock()
	l.conns = append(l.conns, lc)
	l.mu.Unlock()
	return lc, nil
}

// conn returns the mock's side of the client connection whose local
// address is client, once the mock has accepted it.
func (l *writeLog) conn(t *testing.T, client net.Addr) *loggedConn {
	t.Helper()
	var found *loggedConn
	eventually(t, "the connection from "+client.String(), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.conns {
			if c.RemoteAddr().String() == client.String() {
				found = c
			}
		}
		return found != nil
	})
	return found
}

// loggedConn records writes. It embeds the net.Conn, not the *TCPConn,
// so that no write can bypass Write (ReadFrom); SetNoDelay is passed on.
type loggedConn struct {
	net.Conn
	tcp    *net.TCPConn
	mu     sync.Mutex
	writes [][]byte
}

func (c *loggedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *loggedConn) SetNoDelay(on bool) error { return c.tcp.SetNoDelay(on) }

// take returns the writes recorded since the last take.
func (c *loggedConn) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.writes))
	for i, w := range c.writes {
		out[i] = string(w)
	}
	c.writes = nil
	return out
}

// noDelay reports whether TCP_NODELAY is set on the mock's side.
func (c *loggedConn) noDelay(t *testing.T) bool {
	t.Helper()
	rc, err := c.tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return v != 0
}

// TestSplitWrites: with -split-writes, every answer (health included) goes
// out as Python's http.server sends one: the status line and headers in
// one write, with a Content-Length, and the body in a second, on a
// connection with TCP_NODELAY off, several answers on one connection. A
// stream sends its headers alone, then its events. Without the flag, a
// whole answer is one write, with TCP_NODELAY on.
func TestSplitWrites(t *testing.T) {
	log := &writeLog{}
	f := startOn(t, func(ln net.Listener) net.Listener { log.Listener = ln; return log },
		"-split-writes", "-tokens", "3", "-stream-interval", "1ms")
	f.waitReady()
	c := f.dial()
	server := log.conn(t, c.conn.LocalAddr())
	if server.noDelay(t) {
		t.Error("TCP_NODELAY is on with -split-writes")
	}
	server.take()
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/health", ""},
		{"POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/embeddings", `{"input":"x"}`},
		{"GET", "/mock/stats", ""},
		{"POST", "/v1/nowhere", `{}`}, // an error answer too
	} {
		resp, body := c.do(r.method, r.path, r.body)
		writes := server.take()
		if len(writes) != 2 {
			t.Errorf("%s %s: %d writes %q, want the headers, then the body", r.method, r.path, len(writes), writes)
			continue
		}
		head, rest := writes[0], writes[1]
		if !strings.HasPrefix(head, "HTTP/1.1 "+strconv.Itoa(resp.StatusCode)) || !strings.HasSuffix(head, "\r\n\r\n") {
			t.Errorf("%s %s: first write %q is not the head alone", r.method, r.path, head)
		}
		if rest != body || resp.ContentLength != int64(len(body)) || body == "" {
			t.Errorf("%s %s: second write %q, body %q, Content-Length %d", r.method, r.path, rest, body, resp.ContentLength)
		}
	}
	resp, body := c.do("POST", "/v1/chat/completions", `{"model":"m","stream":true}`)
	writes := server.take()
	if resp.StatusCode != 200 || !strings.Contains(body, "data: [DONE]") || len(writes) < 2 ||
		!strings.HasSuffix(writes[0], "\r\n\r\n") || strings.Contains(writes[0], "data:") {
		t.Errorf("stream: %d %q in writes %q", resp.StatusCode, body, writes)
	}
	if st := f.stats(); st.Requests != 3 {
		t.Errorf("%d model requests counted, want 3", st.Requests)
	}

	plainLog := &writeLog{}
	g := startOn(t, func(ln net.Listener) net.Listener { plainLog.Listener = ln; return plainLog })
	g.waitReady()
	pc := g.dial()
	plain := plainLog.conn(t, pc.conn.LocalAddr())
	if !plain.noDelay(t) {
		t.Error("TCP_NODELAY is off without -split-writes")
	}
	plain.take()
	pc.do("GET", "/health", "")
	if writes := plain.take(); len(writes) != 1 {
		t.Errorf("without -split-writes: %d writes %q, want 1", len(writes), writes)
	}
}
