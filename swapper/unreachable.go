package swapper

import (
	"errors"
	"net"
	"net/url"
	"syscall"
	"time"
)

// A backend's process may outlive its server: a wrapper script that starts
// the server beside a log shipper and then waits lives on when the server
// is killed, so no exit is seen. What is seen is a refused connection:
// nothing listens on the backend's port any more. That, and only that,
// counts as death. A slow or busy backend (a single-threaded server blocks
// its health endpoint while it works) times out, and is never taken for
// dead.
//
// Two things find it: a request, whose connection is refused (the proxy
// reports it through its lease, see Lease.Unreachable), and, for a backend
// nobody is using, a connect to its port every MeasureInterval (see
// checkIdle). Both lead to the one crash path: watch stops the process
// group and retires the instance.

// idleCheckTimeout bounds the idle check's connect. A backend on this
// machine answers a connect at once, even when busy (the kernel does); one
// that does not is not dead, only slow.
const idleCheckTimeout = time.Second

// unreachable takes inst for dead if err is a refused connection and inst
// is still b's instance, ready or draining: from now on it takes no
// requests (Stopping), and its watch stops and retires it as crashed. It
// reports whether it did. Reports on an instance already gone or going
// (a stale lease, a second request finding the same) are ignored.
func (s *Swapper) unreachable(b *backend, inst *instance, err error) bool {
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return false
	}
	s.mu.Lock()
	defer s.unlock()
	if s.closed || b.cur != inst || inst.deadErr != nil || b.state != Ready && b.state != Draining {
		return false
	}
	inst.deadErr = err
	close(inst.dead)
	// Out of Ready now, not once stopped: a request sent again after this
	// report must not be handed the same dead instance.
	b.enter(Stopping, s.clock.Now())
	s.changedLocked(b)
	return true
}

// stoppedAnswering is the crash event's message for a backend found dead.
func stoppedAnswering(err error) string {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "stopped answering: connection refused"
	}
	return "stopped answering: " + err.Error()
}

// checkIdle connects to the port of each ready backend that has had no
// request for MeasureInterval, and reports those that refuse. Only a TCP
// connect, no HTTP request: backends log every request, and the log would
// fill with these. A backend in use is left to its requests.
func (s *Swapper) checkIdle(now time.Time) {
	type check struct {
		b    *backend
		inst *instance
	}
	var due []check
	s.mu.Lock()
	for _, b := range s.backends {
		inst := b.cur
		if b.state != Ready || inst.inflight > 0 || inst.addr == "" {
			continue
		}
		last := b.lastUsed
		if inst.checkedAt.After(last) {
			last = inst.checkedAt
		}
		if now.Sub(last) < s.opts.MeasureInterval {
			continue
		}
		inst.checkedAt = now
		due = append(due, check{b, inst})
	}
	s.unlock()
	for _, c := range due {
		d := net.Dialer{Timeout: idleCheckTimeout}
		conn, err := d.DialContext(s.ctx, "tcp", c.inst.addr)
		if err != nil {
			s.unreachable(c.b, c.inst, err)
			continue
		}
		conn.Close()
	}
}

// hostPort is the host:port an upstream URL's requests connect to; "" if
// it has none.
func hostPort(upstream string) string {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	switch u.Scheme {
	case "https":
		return net.JoinHostPort(u.Hostname(), "443")
	case "http":
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return ""
}
