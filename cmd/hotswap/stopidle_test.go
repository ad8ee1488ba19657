package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// TestStopClosesIdleConnectionsFirst: a backend that, like llama-server,
// waits on SIGTERM for its idle keep-alive connections to close (the
// mock's -exit-idle-wait, a minute here, as long as hotswap keeps them)
// exits at once: hotswap closed its pooled connections to it once it was
// drained, before signalling it. And a
// model with stop_signal: kill gets SIGKILL at once, not the SIGTERM it
// would have exited on cleanly.
func TestStopClosesIdleConnectionsFirst(t *testing.T) {
	b := build(t)
	_, base, logs := startLogged(t, b, writeConfig(t, b, `
ports: 22000-22999
stop_timeout: 1m
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -exit-idle-wait 1m", upstream_keepalive: 1m}
  k: {cmd: "MOCK -port ${PORT} -model ${MODEL}", upstream_keepalive: 1m, stop_signal: kill}
`))
	c := client{t, base, ""}
	admin := client{t, base, ""}
	stopped := func(model string) string {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "backend stopped") && strings.Contains(l, `"model": "`+model+`"`) ||
				strings.Contains(l, "backend stopped") && strings.Contains(l, `"model":"`+model+`"`) {
				return l
			}
		}
		return ""
	}

	c.chat("a") // leaves a keep-alive connection in hotswap's pool
	if code, body, _ := admin.do("POST", "/admin/models/a/unload", ""); code != 200 {
		t.Fatalf("unload a: %d %s", code, body)
	}
	if !mocktest.Eventually(30*time.Second, func() bool { return stopped("a") != "" }) {
		t.Fatalf("a was not stopped:\n%s", logs.String())
	}
	// hotswap's close of its pooled connection may reach the mock a moment
	// after SIGTERM does: either none was open, or the one open closed by
	// itself, well before the mock's minute of waiting for it (within
	// which a was stopped).
	if out := logs.String(); !strings.Contains(out, "exit wait: 0 connections open at SIGTERM") &&
		!strings.Contains(out, "exit wait: connections closed after") || strings.Contains(out, "passed with connections open") {
		t.Errorf("a waited for connections hotswap kept open (want them closed before it was signalled):\n%s", out)
	}
	if l := stopped("a"); !strings.Contains(l, "exit status 0") {
		t.Errorf("a's stop: %s", l)
	}

	c.chat("k")
	if code, body, _ := admin.do("POST", "/admin/models/k/unload", ""); code != 200 {
		t.Fatalf("unload k: %d %s", code, body)
	}
	if !mocktest.Eventually(30*time.Second, func() bool { return stopped("k") != "" }) {
		t.Fatalf("k was not stopped:\n%s", logs.String())
	}
	if l := stopped("k"); !strings.Contains(l, "signal 9") {
		t.Errorf("k (stop_signal: kill) stopped: %s", l)
	}
}
