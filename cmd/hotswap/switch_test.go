package main

import (
	"bufio"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// TestSIGTERMDuringAModeSwitch: a mode switch waits on a model's 60 s
// drain (a stream is running on it); a SIGHUP comes, then a SIGTERM.
// hotswap reloads without waiting for the switch, and exits within
// shutdown_grace, not after the drain, leaving no backend behind.
func TestSIGTERMDuringAModeSwitch(t *testing.T) {
	b := build(t)
	cmd, base, logs := startLogged(t, b, writeConfig(t, b, `
ports: 22000-22999
stop_timeout: 2s
server: {shutdown_grace: 2s}
scheduling: {drain_timeout: 60s}
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -tokens 1000 -stream-interval 100ms -progress-interval 0"}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL} -progress-interval 0"}
modes:
  solo: [b]
`))
	// A stream on a, read as it comes: a has work for 100 s.
	resp, err := http.Post(base+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"a","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream on a: %v %v", resp, err)
	}
	defer resp.Body.Close()
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
		}
	}()
	c := client{t, base, ""}
	switched := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/admin/modes/solo", nil)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			switched <- 0
			return
		}
		r.Body.Close()
		switched <- r.StatusCode
	}()
	if !mocktest.Eventually(15*time.Second, func() bool { return c.running()["a"].State == "draining" }) {
		t.Fatalf("a is not draining for the switch: %+v", c.running())
	}
	pids := mocktest.Pids(b.mock)

	// A reload while the switch waits: carried out, the switch still waiting.
	cmd.Process.Signal(syscall.SIGHUP)
	if !mocktest.Eventually(10*time.Second, func() bool { return strings.Contains(logs.String(), "configuration reloaded") }) {
		t.Fatal("the reload waited behind the mode switch")
	}

	began := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("hotswap's exit: %v", err)
		}
	case <-time.After(30 * time.Second): // the drain is 60 s; shutdown_grace 2 s
		t.Fatalf("hotswap did not exit within 30 s of SIGTERM during a mode switch waiting on a drain")
	}
	t.Logf("exited %s after SIGTERM (shutdown_grace 2s, drain_timeout 60s)", time.Since(began).Round(10*time.Millisecond))
	if code := <-switched; code != 503 && code != 0 {
		t.Errorf("the switch answered %d as hotswap shut down", code)
	}
	for _, pid := range pids {
		if mocktest.Alive(pid) {
			t.Errorf("backend %d outlived hotswap", pid)
		}
	}
}
