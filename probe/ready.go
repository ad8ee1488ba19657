// Package probe reports what the machine and the backends say about
// themselves: whether a backend answers its health check, and (see
// memory.go) how much memory the machine has and a backend uses.
package probe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/clock"
)

// ErrNotReady is wrapped by Wait when a backend did not become healthy in
// time. The wrapped chain also carries the last check's failure.
var ErrNotReady = errors.New("backend did not become healthy")

// ErrExited is returned by Wait when the backend's process exited while we
// were waiting for it.
var ErrExited = errors.New("backend exited while starting")

// Readiness polls backends' health endpoints. The zero value is usable.
type Readiness struct {
	// Client performs the checks. nil means a client with CheckTimeout.
	Client *fasthttp.Client
	// CheckTimeout bounds one health request; 0 means 2s.
	CheckTimeout time.Duration
	// Clock is the time Wait's polling and stall timeout go by; nil is the
	// real clock. Its owner gives its own (the swapper's), so that a
	// start's timeout goes by the same time as the rest of the lifecycle,
	// and tests move it by hand instead of waiting out real timeouts.
	Clock clock.Clock

	once sync.Once
	own  *fasthttp.Client
}

// WaitOptions tune one Wait.
type WaitOptions struct {
	// Timeout is how long the backend may go without becoming healthy
	// (0: no limit but ctx's). With LastActivity set it is a stall
	// timeout: it restarts whenever the backend shows activity, so a slow
	// but visibly progressing load is not killed while a silent hung one
	// is.
	Timeout time.Duration
	// LastActivity, if set, reports when the backend last showed a sign of
	// life (wrote output, say), on the Readiness's clock.
	LastActivity func() time.Time
	// Exited, if set, is closed when the backend's process ends; Wait then
	// gives up at once instead of polling a dead port.
	Exited <-chan struct{}
	// Wake, if set, triggers a check at once. Backends say when they are
	// ready ("server is listening"), so checking on each output line sees
	// a ready backend without waiting out a poll interval.
	Wake <-chan struct{}
	// Interval is how often the health path is polled: steadily and
	// short (default 5ms), so that a backend that says nothing when it is
	// ready is still seen within milliseconds. A health GET to a backend on
	// this machine costs microseconds, so even a minute-long load polled
	// this often costs nothing worth saving.
	Interval time.Duration
}

// DefaultInterval is how often Wait polls unless told otherwise.
const DefaultInterval = 5 * time.Millisecond

// Check sends one GET to url and reports nil if it answered 200.
func (r *Readiness) Check(ctx context.Context, url string) error {
	return r.check(ctx, url, r.checkTimeout())
}

func (r *Readiness) checkTimeout() time.Duration {
	if r.CheckTimeout <= 0 {
		return 2 * time.Second
	}
	return r.CheckTimeout
}

// check is Check within timeout. A context's deadline is on the real
// clock (the context package's timers are), so it is compared with the
// real time, whatever r.Clock is; so is timeout, which bounds network I/O.
func (r *Readiness) check(ctx context.Context, url string, timeout time.Duration) error {
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			// Not ctx.Err(): it is nil until the context's own timer has
			// run, which on a busy machine can be after its deadline, and
			// nil here would say the backend is ready.
			return fmt.Errorf("GET %s: %w", url, context.DeadlineExceeded)
		}
		timeout = min(timeout, left)
	}
	client := r.client()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodGet)
	// Each check on a connection of its own. On a kept one, Linux delays
	// its ACKs (about 40ms), and a backend that writes its answer's
	// headers and body apart without TCP_NODELAY (Python's http.server,
	// Flask's development server) holds the body back until the headers
	// are acknowledged: every check would stall 40ms, and readiness be
	// seen that much later. A new connection acknowledges at once, and
	// costs tens of microseconds, every few milliseconds, while a backend
	// loads.
	req.Header.SetConnectionClose()
	if err := client.DoTimeout(req, resp, timeout); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if code := resp.StatusCode(); code != fasthttp.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, code)
	}
	return nil
}

func (r *Readiness) client() *fasthttp.Client {
	r.once.Do(func() {
		if r.Client != nil {
			r.own = r.Client
			return
		}
		r.own = &fasthttp.Client{
			NoDefaultUserAgentHeader: true,
			// Health bodies are tiny; a backend answering megabytes is broken.
			MaxResponseBodySize: 1 << 20,
		}
	})
	return r.own
}

// Wait polls url until it answers 200, the backend exits, the timeout
// passes without activity, or ctx ends. The polling interval and the
// timeout are on r.Clock; one check, being network I/O, is bounded in real
// time by CheckTimeout and by what is left of the timeout.
func (r *Readiness) Wait(ctx context.Context, url string, opts WaitOptions) error {
	c := clock.Or(r.Clock)
	interval := opts.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	start := c.Now()
	// left is how long until the backend is given up on; ok is false
	// without a timeout.
	left := func() (d time.Duration, ok bool) {
		if opts.Timeout <= 0 {
			return 0, false
		}
		from := start
		if opts.LastActivity != nil {
			if t := opts.LastActivity(); t.After(from) {
				from = t
			}
		}
		return from.Add(opts.Timeout).Sub(c.Now()), true
	}
	timer := c.NewTimer(0)
	defer timer.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-opts.Exited:
			return ErrExited
		case <-opts.Wake:
		case <-timer.C():
		}
		timeout := r.checkTimeout()
		if d, ok := left(); ok {
			if d <= 0 {
				if last == nil { // no check had the time to be made
					return fmt.Errorf("%w within %s", ErrNotReady, opts.Timeout)
				}
				return fmt.Errorf("%w within %s: %w", ErrNotReady, opts.Timeout, last)
			}
			timeout = min(timeout, d)
		}
		last = r.check(ctx, url, timeout)
		if last == nil {
			return nil
		}
		// The process may have died during the check: say so rather than
		// report a refused connection.
		select {
		case <-opts.Exited:
			return ErrExited
		default:
		}
		// The next check comes after the interval, or when the timeout
		// ends if that is sooner: a backend silent for its timeout is
		// given up on then, not up to an interval later.
		next := interval
		if d, ok := left(); ok {
			next = max(min(next, d), 0)
		}
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		timer.Reset(next)
	}
}
