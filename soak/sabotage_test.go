package soak

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A soak that never fails proves little. SOAK_BREAK breaks something on
// purpose, and the soak must then fail with the violation named here:
//
//	SOAK_BREAK=health SOAK=10s go test -count=1 -run TestSoak -v ./soak
//
// (a comma-separated list breaks several things at once).
var breaks = map[string]string{
	// Every model declares 8 MiB, far less than it holds: hotswap lets
	// them all in until it has measured them.
	"memory": "memory budget exceeded",
	// hotswap is stopped (SIGSTOP) for a second during the load.
	"health": "/health unanswered",
	// A mock hotswap did not start runs as model slow for stop_timeout
	// + 5 s during the load.
	"orphan": "backend outlived its model",
	// Clients wait 1 s for their answers, less than a slow stream takes.
	"deadline": "request got no answer",
	// 20 idle connections to hotswap stay open through the idle check.
	"idle": "not back to idle",
	// A mock hotswap did not start is running when hotswap is SIGKILLed.
	"leftover": "backend outlived hotswap",
	// Clients ask only for the models that never start: every request is
	// answered (503), none served. Needs SOAK of 30s or more.
	"stall": "no request served",
}

// sabotage is the set of things SOAK_BREAK breaks.
type sabotage map[string]bool

func sabotages(t *testing.T) sabotage {
	sab := sabotage{}
	for _, name := range strings.FieldsFunc(os.Getenv("SOAK_BREAK"), func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, ok := breaks[name]; !ok {
			var known []string
			for k := range breaks {
				known = append(known, k)
			}
			slices.Sort(known)
			t.Fatalf("SOAK_BREAK: %q is none of %v", name, known)
		}
		sab[name] = true
	}
	for name := range sab {
		t.Logf("SOAK_BREAK=%s: this soak must fail with %q", name, breaks[name])
	}
	return sab
}

// duringLoad breaks, at `at` into the load, what is broken then.
func (sab sabotage) duringLoad(t *testing.T, h *hotswap, mock string, at time.Duration) {
	if sab["health"] {
		time.AfterFunc(at, func() {
			_ = h.cmd.Process.Signal(syscall.SIGSTOP)
			time.AfterFunc(time.Second, func() { _ = h.cmd.Process.Signal(syscall.SIGCONT) })
		})
	}
	if sab["orphan"] {
		time.AfterFunc(at, func() {
			if p := impostor(t, mock, "slow"); p != nil {
				time.AfterFunc(stopTimeout+5*time.Second, func() { _ = p.Process.Kill() })
			}
		})
	}
}

// impostor starts a mock that hotswap did not start, as model. Whoever
// finds it must kill it (mocktest.Leftovers does, at the end).
func impostor(t *testing.T, mock, model string) *exec.Cmd {
	p := exec.Command(mock, "-listen", "127.0.0.1:0", "-model", model)
	if err := p.Start(); err != nil {
		t.Errorf("SOAK_BREAK: starting an impostor: %v", err)
		return nil
	}
	go func() { _, _ = p.Process.Wait() }() // reaped whoever kills it
	return p
}

// holdConns opens n keep-alive connections to hotswap, each having done
// one request, and keeps them open (idle) until close is called.
func holdConns(t *testing.T, url string, n int) (close func()) {
	var conns []net.Conn
	for range n {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Errorf("SOAK_BREAK=idle: %v", err)
			break
		}
		conns = append(conns, conn)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("GET /health HTTP/1.1\r\nHost: soak\r\n\r\n")); err == nil {
			if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
				resp.Body.Close()
			}
		}
	}
	return func() {
		for _, c := range conns {
			c.Close()
		}
	}
}
