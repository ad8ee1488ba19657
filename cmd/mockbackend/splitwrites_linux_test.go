package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSplitWritesAsPython is the cross-check of -split-writes against the
// real thing, a server on Python's http.server. Against either, a client
// that delays its ACKs (as Linux does on a kept-alive connection; here
// forced with TCP_QUICKACK off) reads each answer's head alone: the body
// is held back, by Nagle's algorithm on the server, until the head is
// acknowledged. Against the mock without the flag, the whole answer comes
// in one read.
func TestSplitWritesAsPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: no cross-check with Python's http.server")
	}
	split := start(t, "-split-writes")
	plain := start(t)
	split.waitReady()
	plain.waitReady()
	const answers = 6
	for _, c := range []struct {
		name string
		addr string
		want func(headAlone int) bool
	}{
		{"python", pythonServer(t, python), func(n int) bool { return n >= answers-1 }},
		{"mock -split-writes", strings.TrimPrefix(split.url, "http://"), func(n int) bool { return n >= answers-1 }},
		{"mock", strings.TrimPrefix(plain.url, "http://"), func(n int) bool { return n == 0 }},
	} {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		headAlone := 0
		for range answers {
			alone, err := firstReadIsHead(conn)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if alone {
				headAlone++
			}
		}
		conn.Close()
		// At most one answer of a server that holds bodies back may come
		// whole: the client's delayed ACK (40ms) can go out before a
		// descheduled test reads.
		if !c.want(headAlone) {
			t.Errorf("%s: %d of %d answers' first reads were the head alone", c.name, headAlone, answers)
		}
	}
}

// firstReadIsHead sends GET /health on conn, in delayed-ACK mode, and
// reports whether the first read of the answer was its head alone. It
// reads the whole answer, which must be a 200.
func firstReadIsHead(conn net.Conn) (bool, error) {
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return false, err
	}
	// Before the request goes: the head must find the client delaying.
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0)
	}); err != nil || serr != nil {
		return false, errors.Join(err, serr)
	}
	if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: backend\r\n\r\n"); err != nil {
		return false, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	if err != nil {
		return false, err
	}
	first := buf[:n]
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(first), conn)), nil)
	if err != nil {
		return false, err
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || len(body) == 0 {
		return false, fmt.Errorf("%s, %d bytes of body: %v", resp.Status, len(body), err)
	}
	return bytes.HasSuffix(first, []byte("\r\n\r\n")), nil
}

// pythonServer runs testdata/split_server.py on a free port until the
// test ends, and returns its address.
func pythonServer(t *testing.T, python string) string {
	t.Helper()
	cmd := exec.Command(python, "testdata/split_server.py", "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("python server said %q: %v", line, err)
	}
	return addr
}
