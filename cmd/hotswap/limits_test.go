package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// fileLimit runs hotswap with its open-file limit lowered: soft and hard,
// set by the shell before it execs hotswap.
func fileLimit(soft, hard int) []string {
	return []string{"sh", "-c", fmt.Sprintf(`ulimit -Sn %d && ulimit -Hn %d && exec "$@"`, soft, hard), "sh"}
}

const limitConfig = `
ports: 22000-22999
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0"}
`

// hold opens n connections to url from ip and keeps them open until the
// test ends; they send nothing.
func hold(t *testing.T, url, ip string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	var conns []net.Conn
	for range n {
		c, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// served reports whether a chat for model a gets a 200 (which takes files
// for the backend's process and connection as well as the client's).
func served(url string) bool {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"a","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == 200
}

// TestFileLimitIsRaised: hotswap runs with its soft open-file limit raised
// to the hard one (Go's runtime does it, to one below the hard limit, so
// that it can tell when someone else changes it), and says what limits it
// chose from it.
func TestFileLimitIsRaised(t *testing.T) {
	b := build(t)
	cmd, _, logs := startLogged(t, b, writeConfig(t, b, limitConfig), fileLimit(128, 4096)...)
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/limits")
	if err != nil {
		t.Skip("no /proc here")
	}
	found := false
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "Max open files") {
			found = true
			if f[3] != "4095" || f[4] != "4096" {
				t.Errorf("limits: %s", line)
			}
		}
	}
	if !found {
		t.Errorf("no open-file limit in:\n%s", raw)
	}
	// Half the files for client connections (each may need one to its
	// backend), less a reserve; a client address may take half of those.
	if !mocktest.Eventually(5*time.Second, func() bool {
		return strings.Contains(logs.String(), `"max_conns": 1983, "max_conns_per_ip": 991, "open_file_limit": 4095`)
	}) {
		t.Errorf("no word of the limits chosen:\n%s", logs)
	}
}

// TestIdleConnectionsPastTheFileLimit: with the default caps and a low
// file limit, one client opening more idle connections than hotswap has
// files gets refused past its cap, and everyone else is still served.
func TestIdleConnectionsPastTheFileLimit(t *testing.T) {
	b := build(t)
	cmd, url, logs := startLogged(t, b, writeConfig(t, b, limitConfig), fileLimit(256, 256)...)
	conns := hold(t, url, "127.0.0.2", 300)
	// Past its cap (31 of an automatic 63) each is answered 429 and closed.
	refused := 0
	// One deadline for all: the refusals go out as files free up (each
	// refused connection lingers up to 2s), which under the race detector
	// on a busy machine takes a while.
	deadline := time.Now().Add(time.Minute)
	for _, c := range conns[len(conns)-50:] {
		_ = c.SetReadDeadline(deadline)
		b, _ := io.ReadAll(c)
		if strings.HasPrefix(string(b), "HTTP/1.1 429") && strings.Contains(string(b), "too_many_connections") {
			refused++
		}
	}
	if refused != 50 {
		t.Errorf("%d of the last 50 connections refused with 429", refused)
	}
	if !served(url) {
		t.Errorf("another client was not served:\n%s", logs)
	}
	if !mocktest.Alive(cmd.Process.Pid) {
		t.Fatal("hotswap died")
	}
}

// TestAcceptErrorsAreNotFatal: with caps above the file limit, accepting
// fails for want of files (EMFILE). hotswap says so, keeps trying, and
// serves again once files are free.
func TestAcceptErrorsAreNotFatal(t *testing.T) {
	b := build(t)
	cfg := limitConfig + "server: {max_conns: 10000, max_conns_per_ip: 10000}\n"
	cmd, url, logs := startLogged(t, b, writeConfig(t, b, cfg), fileLimit(128, 128)...)
	conns := hold(t, url, "127.0.0.2", 300)
	if !mocktest.Eventually(10*time.Second, func() bool {
		return strings.Contains(logs.String(), "accepting connections failed; trying again")
	}) {
		t.Fatalf("hotswap never ran out of files:\n%s", logs)
	}
	if !mocktest.Alive(cmd.Process.Pid) || strings.Contains(logs.String(), "hotswap stopped") {
		t.Fatalf("hotswap gave up:\n%s", logs)
	}
	for _, c := range conns {
		c.Close()
	}
	if !mocktest.Eventually(20*time.Second, func() bool { return served(url) }) {
		t.Fatalf("hotswap did not serve again once files were free:\n%s", logs)
	}
}
