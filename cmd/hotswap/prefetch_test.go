package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// TestQueuedRequestReadsAhead: under batch, a request for b, which does
// not fit beside a while a serves a long request, waits for max_wait; its
// weight file is read into the page cache meanwhile, before b's start is
// decided, and the event stream, the log and /admin/models say so (queued).
// Once a's request ends, b comes in and is answered.
func TestQueuedRequestReadsAhead(t *testing.T) {
	bin := build(t)
	weights := filepath.Join(t.TempDir(), "b.gguf")
	const size = 3<<20 + 5
	if err := os.WriteFile(weights, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	_, url, logs := startLogged(t, bin, writeConfig(t, bin, `
ports: 22000-22999
stop_timeout: 2s
memory: {limit_ram: 100MiB}
scheduling: {policy: batch, max_wait: 1m}
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -tokens 1000000 -stream-interval 10ms", memory: {ram: 60MiB}}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL}", files: [`+weights+`], memory: {ram: 60MiB}}
`))
	c := client{t, url, ""}
	resp, err := http.Get(url + "/admin/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type event struct {
		Type  string         `json:"type"`
		Model string         `json:"model"`
		Data  map[string]any `json:"data"`
	}
	stream := make(chan event, 100)
	go func() {
		defer close(stream)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var e event
				json.Unmarshal([]byte(data), &e)
				stream <- e
			}
		}
	}()
	// next is the next event about b of the types given.
	next := func(types ...string) event {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case e, ok := <-stream:
				if !ok {
					t.Fatal("the event stream ended")
				}
				for _, typ := range types {
					if e.Model == "b" && e.Type == typ {
						return e
					}
				}
			case <-deadline:
				t.Fatalf("no %v event for b", types)
			}
		}
	}

	long := startStream(t, url, "a")
	forB := make(chan error, 1)
	go func() { forB <- chatWithin(url, "b", time.Minute) }()
	for _, done := range []bool{false, true} {
		e := next("readahead", "start")
		if e.Type != "readahead" || e.Data["queued"] != true || e.Data["done"] != done {
			t.Fatalf("event %+v, want b's queued read-ahead (done %v) before its start", e, done)
		}
		if done && (e.Data["bytes"] != float64(size) || e.Data["complete"] != true) {
			t.Errorf("b's queued read-ahead ended %+v, want all %d bytes read", e.Data, size)
		}
	}
	m := models(c)
	if b := m["b"]; b.State != "stopped" || b.Queued != 1 || b.ReadAhead == nil ||
		b.ReadAhead.Bytes != size || !b.ReadAhead.Done || !b.ReadAhead.Queued {
		t.Errorf("b in /admin/models: %s, %d queued, read ahead %+v; want stopped, its request waiting, its file read ahead (queued)",
			b.State, b.Queued, b.ReadAhead)
	}
	if !mocktest.Eventually(5*time.Second, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "read ahead\t") && strings.Contains(line, `"model": "b"`) &&
				strings.Contains(line, `"queued": true`) {
				return true
			}
		}
		return false
	}) {
		t.Errorf("the log does not tell of the queued read-ahead:\n%s", logs.String())
	}

	long.resp.Body.Close() // a goes idle: b comes in
	if e := next("start"); e.Type != "start" {
		t.Fatalf("event %+v, want b's start", e)
	}
	select {
	case err := <-forB:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("b was not answered after a's request ended")
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return models(c)["b"].State == "ready" }) {
		t.Fatalf("b is %s", models(c)["b"].State)
	}
}
