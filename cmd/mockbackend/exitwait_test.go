package main

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// keepAlive opens a connection to addr and leaves it idle after one
// request, as a proxy's pool does.
func keepAlive(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("GET /health HTTP/1.1\r\nHost: mock\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return c
}

// TestProcessExitIdleWait: with -exit-idle-wait, SIGTERM is followed by a
// wait for the open connections to close (llama-server's habit), which
// the mock reports; with none open it exits at once.
func TestProcessExitIdleWait(t *testing.T) {
	t.Run("waits for an idle connection", func(t *testing.T) {
		p := startProc(t, "-listen", "127.0.0.1:0", "-exit-idle-wait", "1h")
		c := keepAlive(t, p.addr())
		p.cmd.Process.Signal(syscall.SIGTERM)
		eventually(t, "the exit wait", func() bool {
			return strings.Contains(p.stdout.String(), "exit wait: 1 connections open at SIGTERM\n")
		})
		select {
		case <-p.done:
			t.Fatalf("exited with a connection open: %q", p.stdout.String())
		default:
		}
		c.Close()
		if code := p.exitCode(); code != 0 || !strings.Contains(p.stdout.String(), "exit wait: connections closed after") {
			t.Errorf("status %d, stdout %q", code, p.stdout.String())
		}
	})
	t.Run("none open", func(t *testing.T) {
		p := startProc(t, "-listen", "127.0.0.1:0", "-exit-idle-wait", "1h")
		p.addr()
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.exitCode(); code != 0 || !strings.Contains(p.stdout.String(), "exit wait: 0 connections open at SIGTERM\nshutting down\n") {
			t.Errorf("status %d, stdout %q", code, p.stdout.String())
		}
	})
	t.Run("gives up", func(t *testing.T) {
		p := startProc(t, "-listen", "127.0.0.1:0", "-exit-idle-wait", "10ms")
		keepAlive(t, p.addr())
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.exitCode(); code != 0 || !strings.Contains(p.stdout.String(), "exit wait: 10ms passed with connections open\n") {
			t.Errorf("status %d, stdout %q", code, p.stdout.String())
		}
	})
}
