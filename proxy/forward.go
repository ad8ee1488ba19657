package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/router"
)

// hopHeaders are meaningful only for one connection and are not forwarded
// (RFC 9110, section 7.6.1).
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// fastPathWait is how long a request's turn may take before the proxy
// watches its client's connection for a hang-up: a ready backend with a
// free slot is handed over well within it.
const fastPathWait = time.Millisecond

// handleForward serves a request for a model's backend: one that names a
// model, on a path hotswap does not serve itself.
func (s *Server) handleForward(ctx *fasthttp.RequestCtx) {
	if err := s.readBody(ctx, s.maxBody); err != nil {
		s.fail(ctx, "", err)
		return
	}
	name, stream, object, err := requestModel(ctx)
	if err != nil {
		s.fail(ctx, "", err)
		return
	}
	m, v, ok := s.config().Lookup(name)
	if !ok {
		// name may alias the request's body; the log and the event stream
		// keep it.
		name = strings.Clone(name)
		s.fail(ctx, name, s.unknownModel(name))
		return
	}
	// A variant is served by its model's backend, queue and memory: only
	// its params are its own.
	var rename string
	if plan := s.shapePlan(m, v); plan != nil {
		if m.UpstreamModel != "" {
			// Taken before the body is shaped: name lies in it.
			rename = clientName(m, v, name)
			// A compressed answer could not be renamed: ask for it as it
			// is (loopback costs nothing), so the client sees its name.
			ctx.Request.Header.Del(fasthttp.HeaderAcceptEncoding)
		}
		if object {
			if err := s.shapeBody(ctx, plan); err != nil {
				s.fail(ctx, m.ID, err)
				return
			}
		}
	}
	if v != nil && s.variants != nil {
		s.variants.Variant(m.ID, v.ID)
	}
	s.dispatch(ctx, m.ID, rename, nil, stream, ctx.Path())
}

// shapeBody replaces the request's body by its shaped copy (see shape.go).
// A body no rule changes is left as it is.
func (s *Server) shapeBody(ctx *fasthttp.RequestCtx, plan *shapePlan) error {
	sh, n := plan.shape(ctx.PostBody())
	if sh == nil {
		return nil
	}
	defer sh.done()
	return s.replaceBody(ctx, n, sh.write)
}

// replaceBody makes the n bytes that write appends to an empty buffer the
// request's body, held within the body budget as the body read was; the
// body read is let go.
func (s *Server) replaceBody(ctx *fasthttp.RequestCtx, n int, write func([]byte) []byte) error {
	h, err := s.hold(int64(n))
	if err != nil {
		return err
	}
	var buf []byte
	if h.buf != nil {
		buf = h.buf[:0]
	} else {
		buf, h.free = allocLarge(n)
		buf = buf[:0]
	}
	buf = write(buf)
	s.dropBody(ctx)
	ctx.SetUserValue(bodyKey{}, h)
	ctx.Request.SetBodyRaw(buf)
	return nil
}

// handleUpstream serves /upstream/{model}/{path...}: any method and path,
// sent to that model's backend as /{path...} (its web UI, llama.cpp's
// /slots and /metrics), through the same queue and memory rules as any
// request.
func (s *Server) handleUpstream(ctx *fasthttp.RequestCtx) {
	rest := ctx.Path()[len("/upstream/"):]
	name, path := rest, []byte("/")
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		name, path = rest[:i], rest[i:]
	}
	if len(name) == 0 {
		s.fail(ctx, "", badRequest("missing_model", "name the model: /upstream/{model}/{path}"))
		return
	}
	m, ok := s.config().Resolve(string(name))
	if !ok {
		s.fail(ctx, string(name), s.unknownModel(string(name)))
		return
	}
	if err := s.readBody(ctx, s.maxBody); err != nil {
		s.fail(ctx, m.ID, err)
		return
	}
	s.dispatch(ctx, m.ID, "", nil, false, path)
}

// dispatch waits for the request's turn at model's backend, then forwards
// it there on path. A streaming request that waits long is sent keep-alive
// comments. With rename, the answer names the model rename (the client's
// name), whatever the backend says (see rename.go); with tr, the answer is
// translated into Ollama's (see ollama.go).
//
// A request that finds its backend dead before reaching it (nothing
// listens on its port: the server behind a wrapper script died) goes round
// once more: it queues again, and is served by the backend started in the
// dead one's place instead of failing.
func (s *Server) dispatch(ctx *fasthttp.RequestCtx, model, rename string, tr *ollamaReply, stream bool, path []byte) {
	for resend := true; ; resend = false {
		t, err := s.router.Enqueue(context.Background(), model)
		if err != nil {
			s.fail(ctx, model, err)
			return
		}
		lease, err := t.Next(fastPathWait)
		hangup := func() {}
		if lease == nil && err == nil {
			// It has to wait: from now on a client that hangs up ends the
			// wait. Not the RequestCtx: its Done fires at shutdown, and a
			// request waiting then is told it was refused (by the router or
			// swapper closing), not that its client left.
			var wait context.Context
			wait, hangup = context.WithCancel(context.Background())
			t.Bind(wait)
			stopWatch := watchHangup(ctx.Conn(), hangup)
			every := s.config().Scheduling.StreamKeepalive
			if stream && tr != nil {
				// An Ollama stream with load progress: its NDJSON says
				// what it waits for (see ollamaWaiting).
				if lease, err = t.Next(progressPoll - fastPathWait); lease == nil && err == nil {
					s.ollamaWaiting(ctx, model, tr, path, t, func() { stopWatch(); hangup() })
					return
				}
			} else if stream && every > 0 {
				if lease, err = t.Next(every - fastPathWait); lease == nil && err == nil {
					// The wait goes on as the answer is written: the body
					// owns it.
					s.streamWaiting(ctx, model, rename, path, t, every, func() { stopWatch(); hangup() })
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
			s.fail(ctx, model, err)
			return
		}
		s.waited(model, t)
		if tr != nil {
			tr.waited(t)
		}
		if !s.forward(ctx, model, rename, tr, lease, path, resend) {
			return
		}
	}
}

// forward sends the request to the lease's backend and streams the answer
// back. The lease is released when the answer has been sent, or has failed.
// With resend, a request that found the backend dead before reaching it is
// not answered: forward reports true, and the caller sends it again.
func (s *Server) forward(ctx *fasthttp.RequestCtx, model, rename string, tr *ollamaReply, lease *router.Lease, path []byte, resend bool) (again bool) {
	if tr != nil {
		tr.keep(lease)
	}
	resp, err := s.roundTrip(ctx, model, lease, path)
	if err != nil {
		if resend && errors.Is(err, errBackendGone) {
			return true
		}
		s.fail(ctx, model, err)
		return false
	}
	if tr != nil {
		s.forwardOllama(ctx, model, tr, lease, resp)
		return false
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	for _, h := range hopHeaders {
		ctx.Response.Header.Del(h)
	}
	ctx.Response.Header.ResetConnectionClose()

	body := resp.BodyStream()
	renamed := rename != "" && renames(resp)
	if body == nil {
		if renamed {
			r := renamer{name: rename, sse: isSSE(resp)}
			ctx.SetBody(r.feed(nil, resp.Body()))
		} else {
			ctx.SetBody(resp.Body())
		}
		fasthttp.ReleaseResponse(resp)
		lease.Release()
		s.logRequest(ctx, model, ctx.Response.StatusCode(), len(ctx.Response.Body()), nil)
		return false
	}
	sse := isSSE(resp)
	// Headers go out at once, so a client sees the stream open before the
	// first token.
	ctx.Response.ImmediateHeaderFlush = sse
	b, _ := s.bodies.Get().(*upstreamBody)
	if b == nil {
		b = new(upstreamBody)
	}
	*b = upstreamBody{
		s: s, ctx: ctx, model: model, lease: lease, resp: resp, r: body, sse: sse,
		status: resp.StatusCode(), pooled: true,
	}
	size := resp.Header.ContentLength()
	if renamed {
		b.rename(rename)
		size = -1 // the client's name is not as long as the backend's
	}
	ctx.Response.SetBodyStream(b, size)
	return false
}

func isSSE(resp *fasthttp.Response) bool {
	return bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream"))
}

// renames reports whether an answer is one whose model is renamed: JSON
// or an event stream, as is (not compressed). Audio, images and text pass
// as they are.
func renames(resp *fasthttp.Response) bool {
	if ce := resp.Header.ContentEncoding(); len(ce) > 0 && string(ce) != "identity" {
		return false
	}
	ct := resp.Header.ContentType()
	return bytes.HasPrefix(ct, []byte("text/event-stream")) || bytes.Contains(ct, []byte("json"))
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
	pooled  bool // from Server.bodies, and back there when closed

	// When renaming (buf set), what the backend sends is rewritten by rn
	// into buf, and the client reads it from out, buf's unread rest.
	rn  renamer
	buf *[]byte
	out []byte
}

// endStream ends a streamed answer once it is sent or its client has gone:
// the request's body is let go, the backend's answer closed and the
// backend given back, and the request logged (with what cut the answer
// short, if it did not end).
func (s *Server) endStream(ctx *fasthttp.RequestCtx, model string, resp *fasthttp.Response, lease *router.Lease,
	status, n int, failure error, ended bool) {
	s.dropBody(ctx)
	err := resp.CloseBodyStream()
	fasthttp.ReleaseResponse(resp)
	lease.Release()
	if failure == nil && !ended && err != nil && !errors.Is(err, io.EOF) {
		failure = err
	}
	s.logRequest(ctx, model, status, n, failure)
}

// rename has the answer name the model name, as the client asked for it.
func (b *upstreamBody) rename(name string) {
	b.rn = renamer{name: name, sse: b.sse}
	b.buf = renameBuffers.Get().(*[]byte)
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if len(b.out) > 0 {
		n := copy(p, b.out)
		b.out = b.out[n:]
		b.n += n
		return n, nil
	}
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
	if b.buf != nil && n > 0 {
		*b.buf = b.rn.feed((*b.buf)[:0], p[:n])
		n = copy(p, *b.buf)
		b.out = (*b.buf)[n:]
		if err == io.EOF && len(b.out) > 0 {
			// The end comes once the rest has been read.
			b.ended, err = true, nil
		}
	}
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
	ae := toAPIError(b.failure, b.s.clock)
	b.pending = append([]byte("\n\ndata: "), ae.body()...)
	b.pending = append(b.pending, "\n\n"...)
	return n, nil
}

func (b *upstreamBody) Close() error {
	b.s.endStream(b.ctx, b.model, b.resp, b.lease, b.status, b.n, b.failure, b.ended)
	if b.buf != nil {
		if cap(*b.buf) <= 1<<20 {
			*b.buf = (*b.buf)[:0]
			renameBuffers.Put(b.buf)
		}
		b.buf, b.out = nil, nil
	}
	if b.pooled {
		s := b.s
		*b = upstreamBody{}
		s.bodies.Put(b)
	}
	return nil
}
