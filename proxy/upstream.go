package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// errUpstream wraps failures talking to a backend that is still running.
var errUpstream = errors.New("could not reach the model's backend")

// errStaleConn marks a pooled connection found closed by the backend
// before a request was written to it.
var errStaleConn = errors.New("the backend had closed the idle connection")

// dialTimeout bounds connecting to a backend, which runs on this machine
// or close to it: a connect that takes longer will not succeed.
const dialTimeout = 5 * time.Second

// staleSweep is how many pooled connections in a row may turn out closed
// before the rest of the pool is dropped as likely closed too.
const staleSweep = 3

// upstreamClient talks to one run of one model's backend. A new run gets a
// new client, so that no pooled connection to a dead process is reused.
//
// Backends close connections on their own: llama-server after every
// streamed answer (without saying so in a header) and after 5s idle,
// uvicorn (vLLM) after 5s idle. The client keeps idle connections for
// less than that (the model's upstream_keepalive), takes the most recently
// used first, looks at a pooled connection before writing to it, and sends
// a request again when the backend cannot have begun it (see do).
type upstreamClient struct {
	instance  uint64
	prefix    string // path of the upstream URL, joined before the request's
	host      string
	keepalive bool // false: a new connection per request
	hc        *fasthttp.HostClient
}

func newUpstreamClient(upstream string, instance uint64, keepalive time.Duration) (*upstreamClient, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("%w: bad upstream URL %q: %w", errUpstream, upstream, err)
	}
	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr += ":443"
		} else {
			addr += ":80"
		}
	}
	hc := &fasthttp.HostClient{
		Addr:  addr,
		IsTLS: u.Scheme == "https",
		// Answers stream as the backend writes them; nothing is
		// buffered whole.
		StreamResponseBody: true,
		// The router bounds concurrency per backend; this is a backstop.
		MaxConns: 4096,
		// Backends' answer headers are short; the buffer is per connection,
		// so per stream in flight.
		ReadBufferSize:                8 << 10,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		MaxIdleConnDuration:           keepalive,
		ConnPoolStrategy:              fasthttp.LIFO,
		// do decides what is sent again, knowing which connection failed.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}
	if !hc.IsTLS {
		// Over TLS, bytes on the wire are not requests and answers, so
		// the plain connection cannot tell reuse; such backends get the
		// keepalive limit only.
		hc.Dial = dialUpstream
	}
	return &upstreamClient{
		instance:  instance,
		prefix:    strings.TrimSuffix(u.Path, "/"),
		host:      u.Host,
		keepalive: keepalive > 0,
		hc:        hc,
	}, nil
}

// do sends req and reads the head of the answer into resp.
//
// A request the backend cannot have begun is sent again: one meant for a
// pooled connection the backend had already closed (found before writing),
// and one whose reused connection failed before a byte of answer came
// back, which is the backend closing that connection as the request
// crossed it; that one is sent again once, and the pool is dropped first,
// so on a new connection. A request that failed on a new connection, or
// once its answer began, is not sent again: the backend may have begun it.
func (c *upstreamClient) do(req *fasthttp.Request, resp *fasthttp.Response) error {
	stale, resent := 0, false
	for {
		err := c.hc.Do(req, resp)
		if err == nil {
			return nil
		}
		conn := connOf(resp)
		switch {
		case errors.Is(err, errStaleConn) && stale < 4*staleSweep:
			if stale++; stale%staleSweep == 0 {
				c.hc.CloseIdleConnections()
			}
		case !resent && conn != nil && conn.unansweredReuse():
			resent = true
			c.hc.CloseIdleConnections()
		default:
			if resent {
				return &resentError{err}
			}
			return err
		}
	}
}

// resentError is the failure of a request do sent a second time. Its
// first try went out, on a connection that failed unanswered: if the
// backend turns out to be dead, it may have died of this request, which
// must then not be sent to another backend (see upstreamErr).
type resentError struct{ err error }

func (e *resentError) Error() string { return e.err.Error() }
func (e *resentError) Unwrap() error { return e.err }

// dialUpstream connects to a backend, on a connection that keeps count of
// its requests.
func dialUpstream(addr string) (net.Conn, error) {
	conn, err := fasthttp.DialTimeout(addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	c := &upConn{Conn: conn, alive: aliveCheck(conn), quickAck: quickAck(conn)}
	c.local = &connAddr{Addr: conn.LocalAddr(), conn: c}
	return c, nil
}

// upConn is a connection to a backend that knows whether it is being
// reused and whether the request on it has had any answer: what it takes
// to tell a connection the backend closed from a request the backend
// began.
//
// Its fields are used only by the request holding the connection, and
// fasthttp hands a connection to one request at a time.
type upConn struct {
	net.Conn
	local    *connAddr
	alive    func() bool // see aliveCheck; nil where it cannot look
	quickAck func()      // see quickAck; nil where there is no such option
	requests int         // requests begun on it
	answered bool        // the current request has had a byte of answer
}

// connAddr is an upConn's local address. fasthttp keeps the address of
// the connection a request went out on in its Response, even after a
// failure; this one leads back to the connection.
type connAddr struct {
	net.Addr
	conn *upConn
}

func (c *upConn) LocalAddr() net.Addr { return c.local }

func (c *upConn) Write(p []byte) (int, error) {
	if c.requests == 0 || c.answered {
		// A new request. On a reused connection, look first: a backend
		// that closed it (after a stream, or when idle) has left an EOF
		// to read, which writing would find only after the request had
		// gone.
		if c.requests > 0 && c.alive != nil && !c.alive() {
			return 0, errStaleConn
		}
		c.requests++
		c.answered = false
	}
	return c.Conn.Write(p)
}

func (c *upConn) Read(p []byte) (int, error) {
	if c.answered && c.quickAck != nil {
		// The answer has begun and more of it is awaited: acknowledge
		// what came, now. A backend that wrote its headers and body
		// apart without TCP_NODELAY sends the body only then. An answer
		// that comes whole in one read (most backends' whole answers)
		// never gets here, so the fast path pays nothing; a stream pays
		// one system call (under a microsecond) per read after its first.
		c.quickAck()
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.answered = true
	}
	return n, err
}

// unansweredReuse reports whether the request on c went out on a reused
// connection and got no byte of answer.
func (c *upConn) unansweredReuse() bool { return c.requests > 1 && !c.answered }

// connOf returns the connection resp's request went out on, if it was one
// of dialUpstream's.
func connOf(resp *fasthttp.Response) *upConn {
	if a, ok := resp.LocalAddr().(*connAddr); ok {
		return a.conn
	}
	return nil
}

// client returns the upstream client for the lease's backend run.
func (s *Server) client(model string, l *router.Lease) (*upstreamClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[model]
	if c != nil && c.instance == l.Instance() {
		return c, nil
	}
	if c != nil {
		c.hc.CloseIdleConnections()
	}
	keepalive := time.Duration(0)
	if m, ok := s.config().Models[model]; ok {
		keepalive = m.UpstreamKeepalive
	}
	c, err := newUpstreamClient(l.Upstream(), l.Instance(), keepalive)
	if err != nil {
		return nil, err
	}
	s.clients[model] = c
	return c, nil
}

// CloseIdle closes hotswap's idle connections to model's backend run
// instance (a Lease's Instance) and forgets its client. It is called once
// the run is drained, right before its process is stopped (see
// swapper.Options.BeforeStop): llama-server, asked to stop, waits for its
// idle keep-alive connections to close (about 100ms) before it exits.
// Connections still in use are left to their requests. It holds no lock
// while it closes them.
func (s *Server) CloseIdle(model string, instance uint64) {
	s.mu.Lock()
	c := s.clients[model]
	if c == nil || c.instance != instance {
		s.mu.Unlock()
		return
	}
	delete(s.clients, model)
	s.mu.Unlock()
	c.hc.CloseIdleConnections()
}

// roundTrip sends the request to the lease's backend and returns its
// answer, the body still to be read. On error the lease is released.
func (s *Server) roundTrip(ctx *fasthttp.RequestCtx, model string, lease *router.Lease, path []byte) (*fasthttp.Response, error) {
	c, err := s.client(model, lease)
	if err != nil {
		lease.Release()
		return nil, err
	}
	req := fasthttp.AcquireRequest()
	ctx.Request.Header.CopyTo(&req.Header)
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	cfg := s.config()
	forBackend(&req.Header, cfg, cfg.Models[model])
	req.Header.SetHost(c.host)
	if !c.keepalive {
		req.Header.SetConnectionClose()
	}
	// The path that was routed, cleaned, not the raw one: a request routed
	// by its cleaned path must not reach another path upstream. (For
	// /upstream/{model}/..., what follows the model.)
	var buf [256]byte
	uri := append(buf[:0], c.prefix...)
	uri = appendEscapedPath(uri, path)
	if q := ctx.URI().QueryString(); len(q) > 0 {
		uri = append(append(uri, '?'), q...)
	}
	req.SetRequestURIBytes(uri)
	req.SetBodyRaw(ctx.PostBody())

	resp := fasthttp.AcquireResponse()
	err = c.do(req, resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		err = s.upstreamErr(lease, err)
		lease.Release()
		return nil, err
	}
	return resp, nil
}

// upstreamErr says whether a failed round trip means the backend died, or
// that hotswap is stopping it as it shuts down.
//
// A refused connection means nothing listens on the backend's port: it is
// dead, even if its process (a wrapper script) lives on. Its owner is told,
// and stops it; the next request starts it again. A request none of whose
// tries went out (refused, or meant for pooled connections found closed)
// never reached the backend, and may wait for the new one
// (errBackendGone); one that went out before may have been begun, and
// killed it (errBackendDied). Nothing else (a timeout, a reset) is taken
// for death.
func (s *Server) upstreamErr(lease *router.Lease, err error) error {
	select {
	case <-s.done:
		return fmt.Errorf("%w: %w", swapper.ErrClosed, err)
	default:
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		lease.Unreachable(err)
		// Stopped on purpose (its drain timeout, a forced unload): that is
		// the answer, not a new backend.
		if cause := lease.Cause(); cause != nil {
			return fmt.Errorf("%w: %w", cause, err)
		}
		var sent *resentError
		if errors.As(err, &sent) {
			return fmt.Errorf("%w: %w", errBackendDied, err)
		}
		return fmt.Errorf("%w: %w", errBackendGone, err)
	}
	select {
	case <-lease.Gone():
		if cause := lease.Cause(); cause != nil {
			return fmt.Errorf("%w: %w", cause, err)
		}
		return fmt.Errorf("%w: %w", errBackendDied, err)
	case <-time.After(50 * time.Millisecond):
		// A connection reset often comes a moment before the exit is
		// noticed; give it that moment before calling the backend alive.
	}
	return fmt.Errorf("%w: %w", errUpstream, err)
}

// appendEscapedPath appends path (decoded, as fasthttp's Path gives it) to
// dst, percent-encoding what may not stand in a path as it is.
func appendEscapedPath(dst, path []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range path {
		if pathChar(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

// pathChar reports whether c may stand for itself in a URL path (RFC 3986
// pchar, and '/').
func pathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("/-._~!$&'()*+,;=:@", c) >= 0
}
