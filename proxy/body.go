package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/config"
)

// Request bodies are read by hotswap, not by fasthttp before the handler:
// only once the request has passed the gate (see access.go), and only
// within a budget. Every body hotswap holds counts against
// server.body_memory until its request has ended; a body that would pass
// it is refused with 503 before it is read. So neither clients without a
// key nor a crowd of uploads can make hotswap hold more than that, and
// what planning counts as free memory for models stays free.

// smallBody is the size up to which bodies are read into pooled buffers:
// most chat requests, read without allocating. The buffers come in
// classes (1, 4 and 16 KiB) so that a request holds no more than about
// what its body takes for as long as it lasts: a thousand streams of short
// chats must not hold a thousand 16 KiB buffers.
const smallBody = 16 << 10

// sizeClasses are the pooled buffers' sizes, smallest first.
var sizeClasses = [...]int{1 << 10, 4 << 10, smallBody}

// classOf is the index of the smallest class that holds n bytes.
func classOf(n int64) int {
	for i, c := range sizeClasses {
		if n <= int64(c) {
			return i
		}
	}
	return len(sizeClasses) - 1
}

// loginBody bounds the status page's sign-in form.
const loginBody = 4 << 10

// bodyBudget counts the bytes of request bodies held at once.
type bodyBudget struct {
	limit int64
	used  atomic.Int64
	small [len(sizeClasses)]sync.Pool // of *heldBody with a buffer of each class
}

// take counts n more bytes held, if they fit.
func (b *bodyBudget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// give counts n bytes let go.
func (b *bodyBudget) give(n int64) { b.used.Add(-n) }

// heldBody is a request body hotswap read: the bytes it counts against the
// budget, and its pooled buffer if it is small, or the function that
// gives back a large one's memory. It is the request's user value under
// bodyKey, so that fasthttp lets go of it (Close) if nothing else did when
// it resets the request.
type heldBody struct {
	b      *bodyBudget
	n      int64
	buf    []byte // pooled, for a small body
	free   func() // for a large body: after it, its bytes must not be touched
	closed bool
}

type bodyKey struct{}

func (h *heldBody) Close() error {
	if h.closed {
		return nil
	}
	h.closed = true
	h.b.give(h.n)
	if h.free != nil {
		h.free()
		h.free = nil
	}
	if h.buf != nil {
		h.buf = h.buf[:0]
		h.b.small[classOf(int64(cap(h.buf)))].Put(h)
	}
	return nil
}

func errBodyMemoryFull(limit int64) *apiError {
	return &apiError{Status: 503, Type: "server_error", Code: "body_memory_full", RetryAfter: time.Second,
		Message: "hotswap holds as many request bodies as server.body_memory (" + config.FormatSize(limit) +
			") allows; try again shortly"}
}

// readBody reads the request's body, of at most limit bytes, within the
// budget. Its errors are the client's (too large, too slow, malformed)
// or the budget's (full); after one, the connection is closed, since the
// rest of the body is still on it.
func (s *Server) readBody(ctx *fasthttp.RequestCtx, limit int64) error {
	r := ctx.RequestBodyStream()
	if r == nil {
		return nil
	}
	n := int64(ctx.Request.Header.ContentLength())
	switch {
	case n == 0:
		return nil
	case n > limit:
		return s.tooLarge(limit)
	case n > 0:
		return s.readSized(ctx, r, n)
	}
	return s.readChunked(ctx, r, limit)
}

// readSized reads a body of a known size n.
func (s *Server) readSized(ctx *fasthttp.RequestCtx, r io.Reader, n int64) error {
	h, err := s.hold(n)
	if err != nil {
		return err
	}
	var buf []byte
	if h.buf != nil {
		buf = h.buf[:n]
	} else {
		buf, h.free = allocLarge(int(n))
	}
	ctx.SetUserValue(bodyKey{}, h)
	if _, err := io.ReadFull(r, buf); err != nil {
		return bodyReadError(err)
	}
	ctx.Request.SetBodyRaw(buf)
	return nil
}

// readChunked reads a body of unknown size, taking budget as it grows.
func (s *Server) readChunked(ctx *fasthttp.RequestCtx, r io.Reader, limit int64) error {
	h, err := s.hold(4 << 10)
	if err != nil {
		return err
	}
	ctx.SetUserValue(bodyKey{}, h)
	buf := h.buf[:0]
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return s.tooLarge(limit)
			}
			grow := min(int64(2*cap(buf)), limit+1)
			if !s.budget.take(grow - h.n) {
				return errBodyMemoryFull(s.budget.limit)
			}
			bigger, free := allocLarge(int(grow))
			bigger = bigger[:copy(bigger, buf)]
			switch {
			case h.buf != nil:
				// The pooled buffer goes back; the hold now counts the new one.
				h.b.small[classOf(int64(cap(h.buf)))].Put(&heldBody{b: h.b, buf: h.buf[:0]})
				h.buf = nil
			case h.free != nil:
				h.free()
			}
			h.n, h.free, buf = grow, free, bigger
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return bodyReadError(err)
		}
	}
	if int64(len(buf)) > limit {
		return s.tooLarge(limit)
	}
	ctx.Request.SetBodyRaw(buf)
	return nil
}

// hold takes n bytes of the budget, with a pooled buffer if n is small.
func (s *Server) hold(n int64) (*heldBody, error) {
	if !s.budget.take(n) {
		return nil, errBodyMemoryFull(s.budget.limit)
	}
	if n > smallBody {
		return &heldBody{b: &s.budget, n: n}, nil
	}
	class := classOf(n)
	h, _ := s.budget.small[class].Get().(*heldBody)
	if h == nil {
		h = &heldBody{b: &s.budget, buf: make([]byte, 0, sizeClasses[class])}
	}
	h.n, h.closed = n, false
	return h, nil
}

// dropBody lets go of the request's body once its request no longer needs
// it: the answer has been written, or is being written from the backend's
// answer (the body went to the backend before that).
func (s *Server) dropBody(ctx *fasthttp.RequestCtx) {
	h, ok := ctx.UserValue(bodyKey{}).(*heldBody)
	if !ok {
		return
	}
	ctx.RemoveUserValue(bodyKey{})
	ctx.Request.SetBodyRaw(nil)
	h.Close()
}

// bodyReadError says what went wrong reading a body, in the client's
// terms.
func bodyReadError(err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, fasthttp.ErrTimeout):
		return errSlowRequest
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest("malformed_request", "the request body ended before the length it announced")
	}
	return badRequest("malformed_request", "malformed HTTP request: "+describeParseError(err))
}

var errSlowRequest = &apiError{Status: 408, Type: "invalid_request_error", Code: "request_timeout",
	Message: "the request did not arrive in time (server.header_timeout, server.body_min_rate)"}
