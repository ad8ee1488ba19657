package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/router"
)

// streamWaiting answers a streaming request that has to wait with an event
// stream at once, and keeps it alive with comment lines saying why until
// the backend's own events follow. Clients and proxies in between would
// otherwise give up on a cold load, and a person watching sees the reason.
// Conforming SSE clients ignore comments.
//
// The status line is sent before the answer is known, so anything that
// goes wrong from here on is told as an error event, the way OpenAI's own
// streams report errors.
//
// A chat completion for a model whose load_progress is on is also told,
// as chat.completion.chunk events a chat window shows, what it waits for
// (see progress.go); the backend's own chunks follow in the same stream.
//
// done is called once the wait is over: it stops watching for a hang-up
// and ends the wait's context.
func (s *Server) streamWaiting(ctx *fasthttp.RequestCtx, model, rename string, path []byte, t *router.Ticket, every time.Duration, done func()) {
	openStream(ctx, fasthttp.StatusOK, "text/event-stream")
	b := &waitingBody{s: s, ctx: ctx, model: model, rename: rename, path: path, t: t, every: every}
	if mode := s.progressMode(model, path); mode != config.LoadProgressOff {
		b.prog = s.newProgress(model, t)
		now := s.clock.Now()
		b.chat = &chatProgress{mode: mode, name: b.clientName(), created: now.Unix(),
			id: fmt.Sprintf("chatcmpl-hotswap-%x", now.UnixNano())}
		prog := b.prog
		b.done = sync.OnceFunc(func() { done(); prog.close() })
		text, _ := b.prog.next() // the first always says something
		b.pending = b.chat.chunk(text)
		b.wrote = now
	} else {
		b.done = sync.OnceFunc(done)
		b.pending = b.comment()
	}
	ctx.Response.SetBodyStream(b, -1)
}

// clientName is the model as the client named it, for the progress's
// chunks: the answer's chunks name it so (rename), or the backend was
// sent the client's own name (no upstream_model), still in the body.
func (b *waitingBody) clientName() string {
	if b.rename != "" {
		return b.rename
	}
	if name, _, err := jsonModel(b.ctx.PostBody()); err == nil && name != "" {
		return strings.Clone(name) // the body is let go before the stream ends
	}
	return b.model
}

// waitingBody is a waiting stream's body: comments while the request
// waits, then the backend's answer.
type waitingBody struct {
	s      *Server
	ctx    *fasthttp.RequestCtx
	model  string
	rename string // the client's name for the model, when answers are renamed
	path   []byte // where the backend is sent the request
	t      *router.Ticket
	every  time.Duration
	done   func()

	// With load progress on: prog says what the request waits for, chat
	// writes it as chunks; wrote is when something was last sent, so
	// that comments keep the stream alive between progress lines.
	prog  *progress
	chat  *chatProgress
	wrote time.Time

	up *upstreamBody // once the backend answers
	waitingOut
	failure error
	status  int
}

func (b *waitingBody) Read(p []byte) (int, error) {
	if b.up != nil && len(b.pending) == 0 {
		return b.up.Read(p)
	}
	return b.read(p, b.next)
}

// openStream starts an answer written as it comes: its status and type,
// no caching, and the headers out at once, so that the client sees the
// stream open before there is anything to say.
func openStream(ctx *fasthttp.RequestCtx, status int, contentType string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentType)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.ImmediateHeaderFlush = true
}

// waitingOut is what a waiting stream has written for its client and not
// yet handed over, until the backend's answer takes over.
type waitingOut struct {
	pending []byte
	last    bool // pending is the end of the stream
	n       int  // bytes handed over
}

// read hands pending over, calling next for more when it is empty.
func (o *waitingOut) read(p []byte, next func()) (int, error) {
	if len(o.pending) == 0 {
		if o.last {
			return 0, io.EOF
		}
		next()
	}
	n := copy(p, o.pending)
	o.pending = o.pending[n:]
	o.n += n
	return n, nil
}

// next waits one more interval, and sets pending to what comes of it.
// With load progress, it looks every progressPoll for something new to
// say, and sends a comment only when nothing was said for an interval.
func (b *waitingBody) next() {
	var lease *router.Lease
	var err error
	for {
		if b.prog == nil {
			if lease, err = b.t.Next(b.every); lease == nil && err == nil {
				b.pending = b.comment()
				return
			}
			break
		}
		if lease, err = b.t.Next(min(b.every, progressPoll)); lease != nil || err != nil {
			break
		}
		now := b.s.clock.Now()
		if text, ok := b.prog.next(); ok {
			b.pending, b.wrote = b.chat.chunk(text), now
			return
		}
		if now.Sub(b.wrote) >= b.every {
			b.pending, b.wrote = b.comment(), now
			return
		}
	}
	b.done()
	if err != nil {
		b.fail(err, nil)
		return
	}
	b.s.waited(b.model, b.t)
	resp, err := b.s.roundTrip(b.ctx, b.model, lease, b.path)
	if err != nil {
		b.fail(err, nil)
		return
	}
	b.status = resp.StatusCode()
	if b.status >= 300 {
		// The backend refused (a bad parameter, say): its error body, which
		// for OpenAI-compatible servers is already in OpenAI's format.
		var body []byte
		if r := resp.BodyStream(); r != nil {
			body, _ = io.ReadAll(io.LimitReader(r, 64<<10))
		} else {
			body = append(body, resp.Body()...)
		}
		_ = resp.CloseBodyStream()
		fasthttp.ReleaseResponse(resp)
		lease.Release()
		b.fail(backendError(b.status, body), body)
		return
	}
	r := resp.BodyStream()
	if r == nil {
		r = bytes.NewReader(resp.Body())
	}
	b.up = &upstreamBody{
		s: b.s, ctx: b.ctx, model: b.model, lease: lease, resp: resp, r: r,
		sse: isSSE(resp), status: b.status,
	}
	if b.prog != nil {
		b.pending = b.chat.last(b.prog.ready())
	}
	if b.rename != "" && renames(resp) {
		b.up.rename(b.rename)
	}
}

func (b *waitingBody) comment() []byte {
	return fmt.Appendf(nil, ": waiting for %s: %s, %ds\n\n", b.model, b.t.Phase(), int(b.t.Waited().Round(time.Second)/time.Second))
}

// fail ends the stream with an error event: the backend's own error body
// if it is one, else err in OpenAI's format.
func (b *waitingBody) fail(err error, backendBody []byte) {
	b.failure = err
	var probe struct {
		Error json.RawMessage `json:"error"`
	}
	data := backendBody
	if json.Unmarshal(backendBody, &probe) != nil || len(probe.Error) == 0 {
		ae := toAPIError(err, b.s.clock)
		if b.status == 0 {
			b.status = ae.Status
		}
		data = ae.body()
	}
	b.pending = append(append([]byte("data: "), bytes.TrimSpace(data)...), "\n\n"...)
	b.last = true
}

// backendError describes a backend's refusal whose body is not already an
// OpenAI error.
func backendError(status int, body []byte) *apiError {
	typ := "server_error"
	if status < 500 {
		typ = "invalid_request_error"
	}
	const most = 512
	if len(body) > most {
		body = body[:most]
	}
	return &apiError{Status: status, Type: typ, Code: "backend_error",
		Message: fmt.Sprintf("the backend answered %d: %s", status, bytes.TrimSpace(body))}
}

// Close is called by fasthttp when the answer is sent or the client has
// gone: either way the request's place, slot or backend is given up.
func (b *waitingBody) Close() error {
	b.done()
	if b.up != nil {
		b.up.n += b.n
		return b.up.Close()
	}
	b.t.Close()
	b.s.dropBody(b.ctx)
	if b.failure == nil {
		b.failure = fmt.Errorf("client gone while waiting for %s: %w", b.model, errClientGone)
		b.status = 499
	}
	b.s.logRequest(b.ctx, b.model, b.status, b.n, b.failure)
	return nil
}
