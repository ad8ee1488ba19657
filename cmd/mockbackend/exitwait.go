package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// connWatch counts a server's open connections, so that the mock can do
// as llama-server does on SIGTERM (-exit-idle-wait): wait until its
// keep-alive connections close before it exits. A client that keeps one
// idle connection open to llama-server makes its exit take about 100ms
// longer; a proxy that closes its idle connections before the signal does
// not.
type connWatch struct {
	mu     sync.Mutex
	open   int
	closed chan struct{} // closed when open next falls to 0; nil while none wait
}

// watchConns counts srv's connections, alongside its own ConnState hook.
func watchConns(srv *http.Server) *connWatch {
	w := &connWatch{}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		if prev != nil {
			prev(c, state)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		switch state {
		case http.StateNew:
			w.open++
		case http.StateClosed, http.StateHijacked:
			w.open--
			if w.open == 0 && w.closed != nil {
				close(w.closed)
				w.closed = nil
			}
		}
	}
	return w
}

// waitClosed waits until no connection is open, or for at most d, and
// says on out how many were open as it began ("exit wait: N connections
// open at SIGTERM"; tests read it) and how it ended.
func (w *connWatch) waitClosed(d time.Duration, out io.Writer) {
	w.mu.Lock()
	n := w.open
	var closed chan struct{}
	if n > 0 {
		closed = make(chan struct{})
		w.closed = closed
	}
	w.mu.Unlock()
	fmt.Fprintf(out, "exit wait: %d connections open at SIGTERM\n", n)
	if n == 0 {
		return
	}
	begun := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-closed:
		fmt.Fprintf(out, "exit wait: connections closed after %v\n", time.Since(begun).Round(time.Millisecond))
	case <-t.C:
		fmt.Fprintf(out, "exit wait: %v passed with connections open\n", d)
	}
}
