package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"
)

// crashChunks is how many content chunks a crashing stream sends before
// the process dies.
const crashChunks = 2

// eventStream writes server-sent events, each flushed as it is written.
//
// With -close-after-stream it takes the connection over from net/http and,
// as llama-server does, closes it once the stream has ended, without a
// "Connection: close" header to warn the client: a client that pools the
// connection finds it dead when it next uses it.
type eventStream struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	conn  net.Conn // the taken-over connection, or nil
	bw    *bufio.ReadWriter
	ended bool
}

// openStream answers 200 with an event stream. The caller must call close
// when done, after end if the stream finished.
func (m *mock) openStream(w http.ResponseWriter) (*eventStream, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	s := &eventStream{w: w, rc: http.NewResponseController(w)}
	if !m.opts.closeAfterStream {
		w.WriteHeader(http.StatusOK)
		return s, s.rc.Flush()
	}
	conn, bw, err := s.rc.Hijack()
	if err != nil {
		return nil, err
	}
	s.conn, s.bw = conn, bw
	// What net/http would have sent, chunked body and all: nothing in it
	// says the connection will not be kept.
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	fmt.Fprint(bw, "HTTP/1.1 200 OK\r\n")
	if err := h.Write(bw); err != nil {
		return nil, err
	}
	fmt.Fprint(bw, "\r\n")
	return s, bw.Flush()
}

// send writes one event, named if name is not empty. It reports whether
// the client can still be written to.
func (s *eventStream) send(name string, data []byte) bool {
	var b []byte
	if name != "" {
		b = append(append(append(b, "event: "...), name...), '\n')
	}
	b = append(append(append(b, "data: "...), data...), "\n\n"...)
	if s.conn == nil {
		if _, err := s.w.Write(b); err != nil {
			return false
		}
		return s.rc.Flush() == nil
	}
	fmt.Fprintf(s.bw, "%x\r\n%s\r\n", len(b), b)
	return s.bw.Flush() == nil
}

// sendJSON writes one event whose data is v as JSON.
func (s *eventStream) sendJSON(name string, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the mock's own value: a bug
	}
	return s.send(name, b)
}

// end marks the stream as complete: a taken-over connection gets the
// chunked body's last chunk.
func (s *eventStream) end() {
	s.ended = true
	if s.conn != nil {
		fmt.Fprint(s.bw, "0\r\n\r\n")
		_ = s.bw.Flush()
	}
}

// close closes a taken-over connection, ended or not: one that did not end
// is cut off, as a crash would cut it.
func (s *eventStream) close() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// generate paces n tokens by -stream-interval, calling emit with each
// token's index. It crashes the process where -crash-after says, and
// reports false as soon as the client has gone.
func (m *mock) generate(r *http.Request, c *call, n int, emit func(i int) bool) bool {
	for i := range n {
		if c.crash && i == crashChunks {
			m.die()
		}
		if !sleep(r.Context(), m.opts.streamInterval) {
			return false
		}
		if !emit(i) {
			return false
		}
	}
	if c.crash {
		m.die() // fewer tokens than crashChunks: still never end cleanly
	}
	return true
}

// streamTokens streams n tokens as events: first the events of start,
// then one per token from delta, then those of finish. It handles the
// stream's end and the connection's close.
func (m *mock) streamTokens(w http.ResponseWriter, r *http.Request, c *call, n int,
	start func(s *eventStream) bool, delta func(s *eventStream, i int) bool, finish func(s *eventStream) bool) {
	s, err := m.openStream(w)
	if err != nil {
		return
	}
	defer s.close()
	if start != nil && !start(s) {
		return
	}
	if !m.generate(r, c, n, func(i int) bool { return delta(s, i) }) {
		return
	}
	if finish(s) {
		s.end()
	}
}
