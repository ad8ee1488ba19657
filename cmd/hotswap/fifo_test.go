package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/control"
	"github.com/hotswap/hotswap/internal/mocktest"
)

// fittingConfig is issue 26's machine: a and b do not fit together under
// limit_ram, c fits beside either. a streams for as long as its client
// reads (a million tokens), so a's long request ends only when the test
// hangs up.
const fittingConfig = `
ports: 22000-22999
stop_timeout: 2s
memory: {limit_ram: 100MiB}
scheduling: {policy: POLICY, max_wait: 1m}
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -tokens 1000000 -stream-interval 10ms", memory: {ram: 60MiB}}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 60MiB}}
  c: {cmd: "MOCK -port ${PORT} -model ${MODEL} -startup 300ms", memory: {ram: 30MiB}}
`

// TestFittingStartGoesAtOnce: a serves a long request; b, asked for next,
// must wait for it (under fifo its swap is decided at once and waits for
// a's drain, under batch it waits for max_wait). c, asked for while b
// waits, fits beside either: it is answered while a's long request is
// still streaming and before b is, under both policies.
func TestFittingStartGoesAtOnce(t *testing.T) {
	bin := build(t)
	for _, policy := range []string{"fifo", "batch"} {
		t.Run(policy, func(t *testing.T) {
			_, url := start(t, bin, writeConfig(t, bin, strings.ReplaceAll(fittingConfig, "POLICY", policy)))
			c := client{t, url, ""}
			long := startStream(t, url, "a")

			forB := make(chan error, 1)
			go func() { forB <- chatWithin(url, "b", time.Minute) }()
			// b waits: under fifo, its swap is committed (a draining, b
			// starting); under batch, it is queued.
			if !mocktest.Eventually(10*time.Second, func() bool {
				m := models(c)
				if policy == "fifo" {
					return m["a"].State == "draining" && m["b"].State == "starting"
				}
				return m["b"].Queued == 1
			}) {
				t.Fatalf("b is not waiting for a: %+v", models(c))
			}

			// Bounded, so that a c held behind a's drain fails rather
			// than hangs: a's stream would never end.
			if err := chatWithin(url, "c", 30*time.Second); err != nil {
				t.Fatalf("c, which fits beside a and beside b: %v", err)
			}
			select {
			case err := <-forB:
				t.Fatalf("b was answered (%v) before c, with a's long request still in flight", err)
			default:
			}
			m := models(c)
			if m["a"].InFlight != 1 || m["b"].State == "ready" {
				t.Fatalf("when c was answered: a %s with %d in flight, b %s; want a's long request going on and b not in",
					m["a"].State, m["a"].InFlight, m["b"].State)
			}
			// a's stream is still flowing: c did not wait for its end.
			if line, err := long.r.ReadString('\n'); err != nil {
				t.Fatalf("a's stream ended before c was answered: %q %v", line, err)
			}

			// The client of a's long request hangs up: a goes idle (drained
			// under fifo), and b comes in.
			long.resp.Body.Close()
			select {
			case err := <-forB:
				if err != nil {
					t.Fatalf("b after a's request ended: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("b was not answered after a's request ended")
			}
		})
	}
}

// chatWithin sends a chat for model and waits up to d for a 200.
func chatWithin(url, model string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("chat %s: %w", model, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("chat %s: %d %s", model, resp.StatusCode, body)
	}
	return nil
}

// models is GET /admin/models, by model.
func models(c client) map[string]control.ModelStatus {
	c.t.Helper()
	_, body, _ := c.do("GET", "/admin/models", "")
	var list []control.ModelStatus
	if err := json.Unmarshal(body, &list); err != nil {
		c.t.Fatalf("/admin/models: %v: %s", err, body)
	}
	out := map[string]control.ModelStatus{}
	for _, m := range list {
		out[m.Model] = m
	}
	return out
}
