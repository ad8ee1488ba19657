package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// What a scripted backend does with one request.
type action int

const (
	answer          action = iota
	answerThenClose        // answer, then close the connection (keeping on reading, to see any request sent to it)
	dropUnanswered         // close the connection without a byte of answer
	halfAnswer             // send the status line, then close
	answerTogether         // answer once `together` requests have arrived
)

// scriptedBackend is a raw HTTP/1.1 server on 127.0.0.1 that does with
// the Nth request on its Mth connection what script(M, N) says, and
// records which requests arrived on which connection.
type scriptedBackend struct {
	t        *testing.T
	ln       net.Listener
	script   func(conn, req int) action
	together int
	all      chan struct{} // closed once `together` requests arrived

	mu      sync.Mutex
	conns   []*net.TCPConn
	got     [][]string // per connection, the paths of its requests
	arrived int
	wg      sync.WaitGroup
}

func newScriptedBackend(t *testing.T, together int, script func(conn, req int) action) *scriptedBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &scriptedBackend{t: t, ln: ln, script: script, together: together, all: make(chan struct{})}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *scriptedBackend) serve() {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	}()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		idx := len(b.got)
		b.got = append(b.got, nil)
		b.conns = append(b.conns, c.(*net.TCPConn))
		b.mu.Unlock()
		b.wg.Add(1)
		go b.conn(c.(*net.TCPConn), idx)
	}
}

// closeAll closes every connection for writing, as a backend's idle
// timeout would, still recording what arrives on them.
func (b *scriptedBackend) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		_ = c.CloseWrite()
	}
}

func (b *scriptedBackend) conn(c *net.TCPConn, idx int) {
	defer b.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		b.mu.Lock()
		b.got[idx] = append(b.got[idx], req.URL.Path)
		if b.arrived++; b.arrived == b.together {
			close(b.all)
		}
		b.mu.Unlock()
		const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		switch b.script(idx, n) {
		case answer:
			_, _ = io.WriteString(c, ok)
		case answerTogether:
			<-b.all
			_, _ = io.WriteString(c, ok)
		case answerThenClose:
			_, _ = io.WriteString(c, ok)
			_ = c.CloseWrite() // a FIN now; what still arrives is recorded
		case dropUnanswered:
			return
		case halfAnswer:
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			return
		}
	}
}

// requests returns, per connection, how many requests arrived on it.
func (b *scriptedBackend) requests() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := make([]int, len(b.got))
	for i, g := range b.got {
		n[i] = len(g)
	}
	return n
}

// client is an upstreamClient for b that also records the connections it
// dials.
func (b *scriptedBackend) client() (*upstreamClient, func() []*upConn) {
	c, err := newUpstreamClient("http://"+b.ln.Addr().String(), 1, time.Minute)
	if err != nil {
		b.t.Fatal(err)
	}
	var mu sync.Mutex
	var dialed []*upConn
	c.hc.Dial = func(addr string) (net.Conn, error) {
		conn, err := dialUpstream(addr)
		if err == nil {
			mu.Lock()
			dialed = append(dialed, conn.(*upConn))
			mu.Unlock()
		}
		return conn, err
	}
	b.t.Cleanup(c.hc.CloseIdleConnections)
	return c, func() []*upConn {
		mu.Lock()
		defer mu.Unlock()
		return append([]*upConn(nil), dialed...)
	}
}

// get sends GET path with c.do and reads the whole answer.
func get(c *upstreamClient, path string) (int, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(path)
	req.Header.SetHost("backend")
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := c.do(req, resp); err != nil {
		return 0, err
	}
	if r := resp.BodyStream(); r != nil {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return 0, err
		}
	}
	return resp.StatusCode(), resp.CloseBodyStream()
}

// TestClosedConnectionNeverGetsARequest: the backend closed the pooled
// connection (as llama-server does after a stream); the next request goes
// out on a new one and never touches the closed one.
func TestClosedConnectionNeverGetsARequest(t *testing.T) {
	b := newScriptedBackend(t, 0, func(conn, req int) action {
		if conn == 0 {
			return answerThenClose
		}
		return answer
	})
	c, dialed := b.client()
	if status, err := get(c, "/one"); status != 200 || err != nil {
		t.Fatalf("%d %v", status, err)
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return !dialed()[0].alive() }) {
		t.Fatal("the backend's close never showed")
	}
	if status, err := get(c, "/two"); status != 200 || err != nil {
		t.Fatalf("%d %v", status, err)
	}
	if got := b.requests(); !slices.Equal(got, []int{1, 1}) {
		t.Errorf("requests per connection %v, want [1 1]", got)
	}
}

// TestManyClosedConnectionsInThePool: every pooled connection was closed
// by the backend; a request still goes out, on a new connection.
func TestManyClosedConnectionsInThePool(t *testing.T) {
	const n = 5
	b := newScriptedBackend(t, n, func(conn, req int) action {
		if conn < n {
			return answerTogether
		}
		return answer
	})
	c, dialed := b.client()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, err := get(c, "/together"); status != 200 || err != nil {
				t.Errorf("%d %v", status, err)
			}
		}()
	}
	wg.Wait()
	conns := dialed()
	if len(conns) != n {
		t.Fatalf("%d connections, want %d", len(conns), n)
	}
	// Now the backend closes them all, as an idle timeout would.
	b.closeAll()
	if !mocktest.Eventually(5*time.Second, func() bool {
		for _, uc := range conns {
			if uc.alive() {
				return false
			}
		}
		return true
	}) {
		t.Fatal("the backend's closes never showed")
	}
	if status, err := get(c, "/after"); status != 200 || err != nil {
		t.Fatalf("%d %v", status, err)
	}
	want := []int{1, 1, 1, 1, 1, 1}
	if got := b.requests(); !slices.Equal(got, want) {
		t.Errorf("requests per connection %v, want %v", got, want)
	}
}

// TestResentOnceWhenDroppedAsItArrived: the backend closed a reused
// connection as the request crossed it (no byte of answer came back). The
// backend cannot have begun it, so it is sent again, once, on a new
// connection; a request that fails on a new connection, or after its
// answer began, is not.
func TestResentOnceWhenDroppedAsItArrived(t *testing.T) {
	cases := []struct {
		name   string
		script func(conn, req int) action
		ok     bool  // the second request succeeds
		want   []int // requests per connection
	}{
		{"dropped on a reused connection", func(conn, req int) action {
			if conn == 0 && req == 1 {
				return dropUnanswered
			}
			return answer
		}, true, []int{2, 1}},
		{"dropped again on the new connection", func(conn, req int) action {
			if conn == 0 && req == 0 {
				return answer
			}
			return dropUnanswered
		}, false, []int{2, 1}},
		{"answer began, then cut", func(conn, req int) action {
			if conn == 0 && req == 1 {
				return halfAnswer
			}
			return answer
		}, false, []int{2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newScriptedBackend(t, 0, tc.script)
			c, _ := b.client()
			if status, err := get(c, "/one"); status != 200 || err != nil {
				t.Fatalf("first: %d %v", status, err)
			}
			status, err := get(c, "/two")
			if ok := status == 200 && err == nil; ok != tc.ok {
				t.Errorf("second: %d %v", status, err)
			}
			if got := b.requests(); !slices.Equal(got, tc.want) {
				t.Errorf("requests per connection %v, want %v", got, tc.want)
			}
		})
	}
	// On a new connection, a drop is not resent: the backend may have
	// begun the request.
	b := newScriptedBackend(t, 0, func(int, int) action { return dropUnanswered })
	c, _ := b.client()
	if _, err := get(c, "/one"); err == nil {
		t.Error("a dropped request on a new connection succeeded")
	}
	if got := b.requests(); !slices.Equal(got, []int{1}) {
		t.Errorf("requests per connection %v, want [1]", got)
	}
}
