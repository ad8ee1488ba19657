package main

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
)

// splitWriter sends an answer as Python's http.server (and Flask's
// development server on it) does: the status line and headers in one
// write, the body in a second, on a connection without TCP_NODELAY (see
// noDelayOff). The body then waits, in the kernel, for the client to
// acknowledge the headers; a client that delays its ACKs, as Linux does
// on a kept-alive connection, waits about 40ms for every answer.
//
// A whole answer is kept until the handler returns, so that it goes out
// with a Content-Length, as http.server's do; a stream (Flush) sends its
// headers alone, then each event as it is flushed.
type splitWriter struct {
	http.ResponseWriter
	status int
	body   []byte
	sent   bool // the headers have gone out (or the connection was taken over)
}

func (s *splitWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *splitWriter) Write(p []byte) (int, error) {
	if s.sent {
		return s.ResponseWriter.Write(p)
	}
	s.body = append(s.body, p...)
	return len(p), nil
}

// sendHeaders writes the status line and headers, alone.
func (s *splitWriter) sendHeaders() error {
	s.sent = true
	if s.status == 0 {
		s.status = http.StatusOK
	}
	s.ResponseWriter.WriteHeader(s.status)
	return http.NewResponseController(s.ResponseWriter).Flush()
}

// FlushError is what http.ResponseController's Flush calls: the headers
// first, on their own, then what the handler has written.
func (s *splitWriter) FlushError() error {
	if !s.sent {
		if err := s.sendHeaders(); err != nil {
			return err
		}
		if _, err := s.ResponseWriter.Write(s.body); err != nil {
			return err
		}
		s.body = nil
	}
	return http.NewResponseController(s.ResponseWriter).Flush()
}

func (s *splitWriter) Flush() { _ = s.FlushError() }

// Hijack hands the connection over (-close-after-stream writes its
// streams itself, each event a write of its own).
func (s *splitWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	s.sent = true
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func (s *splitWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// finish sends a whole answer once the handler has returned: the headers
// in one write now, the body in the write net/http makes as it ends the
// answer.
func (s *splitWriter) finish() {
	if s.sent {
		return
	}
	s.Header().Set("Content-Length", strconv.Itoa(len(s.body)))
	if s.sendHeaders() != nil {
		return // the client left
	}
	_, _ = s.ResponseWriter.Write(s.body)
}

// noDelayOff turns Nagle's algorithm back on for conn (Go turns it off on
// every connection): a small write then waits for the ACK of the one
// before it, as on a server written in Python.
func noDelayOff(conn net.Conn) {
	if tc, ok := conn.(interface{ SetNoDelay(bool) error }); ok {
		_ = tc.SetNoDelay(false)
	}
}
