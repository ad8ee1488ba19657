package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// The accept loop and the connections it hands fasthttp are where one
// client could take hotswap down for everyone: by opening connections until
// no file is left (fasthttp ends its Serve on an accept error it does not
// know), by not reading its answer, or by sending nothing. The listener
// keeps to the server section's limits.

const (
	// minAcceptPause and maxAcceptPause bound the wait before accepting
	// again after an error such as EMFILE: long enough not to spin while
	// the condition lasts, short enough to serve again soon after.
	minAcceptPause = 5 * time.Millisecond
	maxAcceptPause = time.Second
	// lingerTimeout and lingerMax bound how long, and how much, a closed
	// connection is read from before it is let go (see linger).
	lingerTimeout = 2 * time.Second
	lingerMax     = 1 << 20
	// maxRefusing is how many refused connections may linger at once;
	// past it, they are closed right after their answer.
	maxRefusing = 64
	// refuseWriteTimeout bounds the write of a refusal: a new connection's
	// send buffer takes it at once, so this is only for the pathological.
	refuseWriteTimeout = 50 * time.Millisecond
	// fdReserve is the open files kept for what is not a client's
	// connection: backends' pipes and upstream connections, the state file.
	fdReserve = 64
	// maxAutoConns caps the connection limit chosen from the file limit.
	maxAutoConns = 10000
)

// listener accepts the connections fasthttp serves. It never gives up on
// an error that passes (a full file table); it refuses, with an answer,
// connections over max_conns or max_conns_per_ip; and the connections it
// hands out drop a client that stops reading and close without resetting
// what the client has not read yet.
type listener struct {
	net.Listener
	log      *zap.Logger
	maxConns int
	maxPerIP int
	stall    time.Duration
	closed   chan struct{}
	close    sync.Once

	mu       sync.Mutex
	open     int
	perIP    map[netip.Addr]int
	refusing int
	lastLog  time.Time // of an accept error or refusal
	unlogged int       // since then
	// lingering counts the goroutines closing connections (see linger);
	// settled is closed when it falls to 0. Not a WaitGroup: connections
	// close while Shutdown waits.
	lingering int
	settled   chan struct{}
}

func newListener(ln net.Listener, log *zap.Logger, maxConns, maxPerIP int, stall time.Duration) *listener {
	return &listener{Listener: ln, log: log, maxConns: maxConns, maxPerIP: maxPerIP, stall: stall,
		closed: make(chan struct{}), perIP: make(map[netip.Addr]int)}
}

// connLimits returns the connection caps for the configured ones (0 is
// auto) and the process's open-file limit (0 if unknown). The automatic
// cap leaves room under the file limit for each client connection's
// upstream one and for the backends.
func connLimits(maxConns, maxPerIP int) (conns, perIP int, files uint64) {
	files = fileLimit()
	conns = maxConns
	if conns == 0 {
		conns = maxAutoConns
		if files > 0 {
			conns = int(min(uint64(maxAutoConns), max(16, files/2-fdReserve)))
		}
	}
	perIP = maxPerIP
	if perIP == 0 {
		perIP = max(1, conns/2)
	}
	return conns, perIP, files
}

func (l *listener) Close() error {
	l.close.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *listener) Accept() (net.Conn, error) {
	pause := minAcceptPause
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !passingAcceptError(err) {
				return nil, err
			}
			l.note("accepting connections failed; trying again", zap.Error(err), zap.Duration("pause", pause))
			select {
			case <-time.After(pause):
			case <-l.closed:
				return nil, net.ErrClosed
			}
			pause = min(2*pause, maxAcceptPause)
			continue
		}
		pause = minAcceptPause
		ip := remoteIP(c)
		if refusal := l.admit(ip); refusal != nil {
			l.note("refusing a connection", zap.String("from", ip.String()), zap.String("why", refusal.Message))
			l.refuse(c, refusal)
			continue
		}
		return &clientConn{Conn: c, l: l, ip: ip}, nil
	}
}

// passingAcceptError reports whether an accept error is a condition that
// passes (out of files or memory, a connection aborted before it was
// taken) rather than the listener's end.
func passingAcceptError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS,
		syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPERM, syscall.EPROTO} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// note logs a warning at most once a second, saying how many went unlogged
// since: a flood of refusals or accept errors must not become a flood of
// log lines.
func (l *listener) note(msg string, fields ...zap.Field) {
	l.mu.Lock()
	if time.Since(l.lastLog) < time.Second {
		l.unlogged++
		l.mu.Unlock()
		return
	}
	n := l.unlogged
	l.lastLog, l.unlogged = time.Now(), 0
	l.mu.Unlock()
	l.log.Warn(msg, append(fields, zap.Int("more_since_last_said", n))...)
}

// admit counts a connection from ip in, or says why it may not be.
func (l *listener) admit(ip netip.Addr) *apiError {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.maxConns {
		return &apiError{Status: 503, Type: "server_error", Code: "too_many_connections", RetryAfter: time.Second,
			Message: fmt.Sprintf("hotswap has %d connections open, its limit (server.max_conns); try again shortly", l.open)}
	}
	if l.perIP[ip] >= l.maxPerIP {
		return &apiError{Status: 429, Type: "rate_limit_error", Code: "too_many_connections", RetryAfter: time.Second,
			Message: fmt.Sprintf("%d connections are open from your address, the limit (server.max_conns_per_ip)", l.perIP[ip])}
	}
	l.open++
	l.perIP[ip]++
	return nil
}

// release counts a connection from ip out.
func (l *listener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// refuse answers c with why it is refused, and closes it. The answer is
// written here, in the accept loop: a new connection's send buffer takes
// an answer this small at once, whatever the client does, so no client
// can hold the loop up, and no flood can starve the answer of a goroutine
// to write it (which closed connections without a word).
func (l *listener) refuse(c net.Conn, why *apiError) {
	body := why.body()
	_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	_, err := fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
		"Retry-After: %d\r\nConnection: close\r\n\r\n%s", why.Status, fasthttp.StatusMessage(why.Status), len(body),
		why.retryAfterSeconds(), body)
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	busy := l.refusing >= maxRefusing
	if !busy {
		l.refusing++
	}
	l.mu.Unlock()
	if busy {
		// Enough refusals linger already. A client that has sent nothing
		// (a flood of idle connections) still reads the answer, then the
		// end; one that has sent a request may see a reset instead.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		c.Close()
		return
	}
	l.lingerThen(c, func() {
		l.mu.Lock()
		l.refusing--
		l.mu.Unlock()
	})
}

// linger closes c without losing what the client has not read yet. A
// socket closed with input it has not read is reset by the kernel, and the
// reset makes the client's side throw away what it has received but not
// read: the 413 that refused a body too large, a refusal above. So the
// writing side is closed first (the client reads the answer, then the
// end), and what the client still sends is read and dropped, for a moment
// and up to a bound, before the socket is closed.
func (l *listener) linger(c net.Conn) { l.lingerThen(c, nil) }

// lingerThen is linger, calling done (if not nil) once c is closed.
func (l *listener) lingerThen(c net.Conn, done func()) {
	tc, ok := c.(*net.TCPConn)
	if !ok || tc.CloseWrite() != nil {
		c.Close()
		if done != nil {
			done()
		}
		return
	}
	_ = tc.SetReadDeadline(time.Now().Add(lingerTimeout))
	l.goLinger(func() {
		_, _ = io.CopyN(io.Discard, tc, lingerMax)
		tc.Close()
		if done != nil {
			done()
		}
	})
}

// goLinger runs f on a goroutine that wait waits for.
func (l *listener) goLinger(f func()) {
	l.mu.Lock()
	if l.lingering == 0 {
		l.settled = make(chan struct{})
	}
	l.lingering++
	l.mu.Unlock()
	go func() {
		defer func() {
			l.mu.Lock()
			if l.lingering--; l.lingering == 0 {
				close(l.settled)
			}
			l.mu.Unlock()
		}()
		f()
	}()
}

// wait waits for lingering closes to end, or for done.
func (l *listener) wait(done <-chan struct{}) {
	l.mu.Lock()
	settled := l.settled
	n := l.lingering
	l.mu.Unlock()
	if n == 0 {
		return
	}
	select {
	case <-settled:
	case <-done:
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// clientConn is a connection fasthttp serves. Each write has stall to make
// progress: a client that accepts no byte of its answer for that long is
// cut off, which aborts its backend request and frees its slot. An answer
// that keeps moving may take as long as it takes.
type clientConn struct {
	net.Conn
	l    *listener
	ip   netip.Addr
	once sync.Once
}

func (c *clientConn) Write(p []byte) (int, error) {
	if c.l.stall > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.l.stall))
	}
	return c.Conn.Write(p)
}

func (c *clientConn) Close() error {
	c.once.Do(func() {
		c.l.release(c.ip)
		c.l.linger(c.Conn)
	})
	return nil
}

// SyscallConn gives the hang-up watcher the socket.
func (c *clientConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("not a socket")
}
