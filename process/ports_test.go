package process_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/hotswap/hotswap/process"
)

// listen holds a port on 127.0.0.1 until the test ends or close is called.
func listen(t *testing.T, port int) (int, func()) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port, func() { l.Close() }
}

func TestPortsSkipsPortsInUse(t *testing.T) {
	port, free := listen(t, 0)
	ps := process.NewPorts(port, port)
	if got, err := ps.Acquire(); err == nil {
		t.Fatalf("acquired %d, which another program listens on", got)
	}
	free()
	got, err := ps.Acquire()
	if err != nil || got != port {
		t.Fatalf("acquire = %d, %v; want %d", got, err, port)
	}
	if got, err := ps.Acquire(); err == nil {
		t.Fatalf("acquired %d twice", got)
	}
	ps.Release(port)
	if got, err := ps.Acquire(); err != nil || got != port {
		t.Errorf("after release: %d, %v", got, err)
	}
	ps.Release(0) // a backend that needed no port: nothing to give back
}

// TestPortsRotate: a restarted backend gets the next port, not the one
// stale connections to its last run still point at.
func TestPortsRotate(t *testing.T) {
	// Two free ports side by side: a random one, and the next if free.
	var first int
	for range 20 {
		p, free := listen(t, 0)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		if err == nil {
			l.Close()
			free()
			first = p
			break
		}
		free()
	}
	if first == 0 {
		t.Skip("found no two free ports side by side")
	}
	ps := process.NewPorts(first, first+1)
	for i, want := range []int{first, first + 1, first} {
		got, err := ps.Acquire()
		if err != nil || got != want {
			t.Fatalf("acquire %d = %d, %v; want %d", i, got, err, want)
		}
		ps.Release(got)
	}
}
