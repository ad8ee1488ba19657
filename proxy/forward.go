package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/router"
)

// errUpstream wraps failures talking to a backend that is still running.
var errUpstream = errors.New("could not reach the model's backend")

// hopHeaders are meaningful only for one connection and are not forwarded
// (RFC 9110, section 7.6.1).
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// upstreamClient talks to one run of one model's backend. A new run gets a
// new client, so that no pooled connection to a dead process is reused.
type upstreamClient struct {
	instance uint64
	prefix   string // path of the upstream URL, joined before the request's
	host     string
	hc       *fasthttp.HostClient
}

func newUpstreamClient(upstream string, instance uint64) (*upstreamClient, error) {
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
	return &upstreamClient{
		instance: instance,
		prefix:   strings.TrimSuffix(u.Path, "/"),
		host:     u.Host,
		hc: &fasthttp.HostClient{
			Addr:  addr,
			IsTLS: u.Scheme == "https",
			// Answers stream as the backend writes them; nothing is
			// buffered whole.
			StreamResponseBody: true,
			// The router bounds concurrency per backend; this is a backstop.
			MaxConns:                      4096,
			ReadBufferSize:                16 << 10,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			MaxIdleConnDuration:           30 * time.Second,
		},
	}, nil
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
	c, err := newUpstreamClient(l.Upstream(), l.Instance())
	if err != nil {
		return nil, err
	}
	s.clients[model] = c
	return c, nil
}

// fastPathWait is how long a request's turn may take before the proxy
// watches its client's connection for a hang-up: a ready backend with a
// free slot is handed over well within it.
const fastPathWait = time.Millisecond

// handleForward serves an endpoint that goes to a model's backend.
func (s *Server) handleForward(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		s.fail(ctx, "", methodNotAllowed("POST"))
		return
	}
	name, stream, err := requestModel(ctx)
	if err != nil {
		s.fail(ctx, "", err)
		return
	}
	m, ok := s.cfg.Resolve(name)
	if !ok {
		s.fail(ctx, name, s.unknownModel(name))
		return
	}
	// Not the RequestCtx: its Done fires at shutdown, and a request waiting
	// then is told it was refused (by the router or swapper closing), not
	// that its client left.
	wait, hangup := context.WithCancel(context.Background())
	t, err := s.router.Enqueue(wait, m.ID)
	if err != nil {
		hangup()
		s.fail(ctx, m.ID, err)
		return
	}
	lease, err := t.Next(fastPathWait)
	if lease == nil && err == nil {
		stopWatch := watchHangup(ctx.Conn(), hangup)
		every := s.cfg.Scheduling.StreamKeepalive
		if stream && every > 0 {
			if lease, err = t.Next(every - fastPathWait); lease == nil && err == nil {
				// The wait goes on as the answer is written: the body owns it.
				s.streamWaiting(ctx, m.ID, t, every, func() { stopWatch(); hangup() })
				return
			}
		} else {
			lease, err = t.Next(0)
		}
		stopWatch()
	}
	hangup()
	if err != nil {
		t.Close()
		s.fail(ctx, m.ID, err)
		return
	}
	s.forward(ctx, m.ID, lease)
}

// requestModel reads the model a request names, from its JSON body or its
// multipart form.
func requestModel(ctx *fasthttp.RequestCtx) (model string, stream bool, err error) {
	body := ctx.PostBody()
	ct := ctx.Request.Header.ContentType()
	switch {
	case hasPrefixFold(ct, "multipart/form-data"):
		if model, err = formModel(string(ct), body); err != nil && !errors.Is(err, errNoModel) {
			return "", false, badRequest("invalid_request", err.Error())
		}
	case len(body) == 0:
		return "", false, badRequest("invalid_request", "request body is empty; expected a JSON object with a model")
	default:
		if model, stream, err = jsonModel(body); err != nil && !errors.Is(err, errNoModel) {
			return "", false, badRequest("invalid_json", err.Error())
		}
	}
	if err != nil {
		return "", false, &apiError{Status: 400, Type: "invalid_request_error", Code: "missing_model", Message: err.Error()}
	}
	return model, stream, nil
}

// hasPrefixFold is bytes.HasPrefix ignoring ASCII case, without the copy
// that lower-casing the header would make.
func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// forward sends the request to the lease's backend and streams the answer
// back. The lease is released when the answer has been sent, or has failed.
func (s *Server) forward(ctx *fasthttp.RequestCtx, model string, lease *router.Lease) {
	resp, err := s.roundTrip(ctx, model, lease)
	if err != nil {
		s.fail(ctx, model, err)
		return
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	for _, h := range hopHeaders {
		ctx.Response.Header.Del(h)
	}
	ctx.Response.Header.ResetConnectionClose()

	body := resp.BodyStream()
	if body == nil {
		ctx.SetBody(resp.Body())
		fasthttp.ReleaseResponse(resp)
		lease.Release()
		s.logRequest(ctx, model, ctx.Response.StatusCode(), len(ctx.Response.Body()), nil)
		return
	}
	sse := bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream"))
	// Headers go out at once, so a client sees the stream open before the
	// first token.
	ctx.Response.ImmediateHeaderFlush = sse
	ctx.Response.SetBodyStream(&upstreamBody{
		s: s, ctx: ctx, model: model, lease: lease, resp: resp, r: body, sse: sse,
		status: resp.StatusCode(),
	}, resp.Header.ContentLength())
}

// roundTrip sends the request to the lease's backend and returns its
// answer, the body still to be read. On error the lease is released.
func (s *Server) roundTrip(ctx *fasthttp.RequestCtx, model string, lease *router.Lease) (*fasthttp.Response, error) {
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
	req.Header.SetHost(c.host)
	if c.prefix == "" {
		req.SetRequestURIBytes(ctx.RequestURI())
	} else {
		req.SetRequestURI(c.prefix + string(ctx.RequestURI()))
	}
	req.SetBodyRaw(ctx.PostBody())

	resp := fasthttp.AcquireResponse()
	err = c.hc.Do(req, resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		err = s.upstreamErr(lease, err)
		lease.Release()
		return nil, err
	}
	return resp, nil
}

// upstreamErr says whether a failed round trip means the backend died.
func (s *Server) upstreamErr(lease *router.Lease, err error) error {
	select {
	case <-lease.Gone():
		return fmt.Errorf("%w: %w", errBackendDied, err)
	case <-time.After(50 * time.Millisecond):
		// A connection reset often comes a moment before the exit is
		// noticed; give it that moment before calling the backend alive.
	}
	return fmt.Errorf("%w: %w", errUpstream, err)
}

// upstreamBody is the answer's body as the client receives it: read from
// the backend as it arrives. fasthttp closes it when the answer is sent or
// the client has gone, and that is when the backend is released.
type upstreamBody struct {
	s      *Server
	ctx    *fasthttp.RequestCtx
	model  string
	lease  *router.Lease
	resp   *fasthttp.Response
	r      io.Reader
	sse    bool
	status int

	n       int
	pending []byte // an error event still to send
	ended   bool
	failure error
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.pending != nil {
		n := copy(p, b.pending)
		b.pending = b.pending[n:]
		if len(b.pending) == 0 {
			b.pending = nil
			b.ended = true
		}
		return n, nil
	}
	if b.ended {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	b.n += n
	if err == nil || err == io.EOF {
		return n, err
	}
	b.failure = b.s.upstreamErr(b.lease, err)
	if !b.sse {
		// The status line is gone already: all that is left is to cut the
		// answer short so the client knows it is incomplete.
		return n, b.failure
	}
	// An event stream can end cleanly with an error event, which OpenAI
	// clients raise as an error instead of a truncated answer.
	ae := toAPIError(b.failure)
	b.pending = append([]byte("\n\ndata: "), ae.body()...)
	b.pending = append(b.pending, "\n\n"...)
	return n, nil
}

func (b *upstreamBody) Close() error {
	err := b.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(b.resp)
	b.lease.Release()
	if b.failure == nil && !b.ended && err != nil && !errors.Is(err, io.EOF) {
		b.failure = err
	}
	b.s.logRequest(b.ctx, b.model, b.status, b.n, b.failure)
	return nil
}
