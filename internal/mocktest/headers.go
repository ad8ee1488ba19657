package mocktest

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// HeaderRecorder serves, on 127.0.0.1 until the test ends, a backend that
// answers every request with a small JSON body and records the headers
// of each one but its health checks: a backend that logs what it is sent.
// It returns the backend's address and the headers, in arrival order.
func HeaderRecorder(t testing.TB) (addr string, seen <-chan http.Header) {
	t.Helper()
	got := make(chan http.Header, 64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			got <- r.Header.Clone()
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"chat.completion"}`)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), got
}
