package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// TestFootprintBelongsToItsCommand: what hotswap measured a model's
// backend to use counts for the command that ran it. Given a smaller
// command by a reload, the model is planned with its declaration until
// measured again; POST /admin/models/{model}/forget drops what was learned.
func TestFootprintBelongsToItsCommand(t *testing.T) {
	b := build(t)
	text := `
ports: 22000-22999
models:
  big: {cmd: "MOCK -port ${PORT} -model ${MODEL} -hold 48MiB", memory: {ram: 8MiB}}
`
	path := writeConfig(t, b, text)
	_, base := start(t, b, path)
	c := client{t, base, ""}
	need := func() int64 { return c.models()["big"].NeedRAM }
	c.chat("big")
	if !mocktest.Eventually(10*time.Second, func() bool { return need() > 40<<20 }) {
		t.Fatalf("big is planned with %d bytes after using 48MiB", need())
	}
	// A smaller backend for the same name: learned afresh.
	smaller := strings.ReplaceAll(strings.Replace(text, "-hold 48MiB", "-hold 4MiB", 1), "MOCK", b.mock)
	if err := os.WriteFile(path, []byte(smaller), 0o644); err != nil {
		t.Fatal(err)
	}
	c.json("POST", "/admin/reload", "", 200, nil)
	// It restarts with the new command (it was idle), which is measured
	// for itself: 4MiB held, about 12MiB in all; never the old 56.
	if !mocktest.Eventually(10*time.Second, func() bool { return c.running()["big"].State == "ready" }) {
		t.Fatalf("big did not restart with its new command: %+v", c.running())
	}
	c.json("POST", "/admin/models/big/unload", "", 200, nil)
	if got := need(); got > 24<<20 {
		t.Errorf("after its command changed, big is planned with %d bytes, the old command's footprint", got)
	}
	// Back to the first command: what it was measured to use counts again.
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "MOCK", b.mock)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.json("POST", "/admin/reload", "", 200, nil)
	if !mocktest.Eventually(10*time.Second, func() bool { return need() > 40<<20 }) {
		t.Errorf("with its first command again, big is planned with %d bytes", need())
	}
	var res struct {
		Model     string `json:"model"`
		Forgotten int    `json:"forgotten"`
	}
	c.json("POST", "/admin/models/big/forget", "", 200, &res)
	if res.Model != "big" || res.Forgotten != 2 { // one per command it has had
		t.Errorf("forget answered %+v", res)
	}
	if got := need(); got != 8<<20 {
		t.Errorf("after forget, big is planned with %d bytes", got)
	}
	if code, body, _ := c.do("POST", "/admin/models/nobody/forget", ""); code != 404 || errCode(body) != "model_not_found" {
		t.Errorf("forget of an unknown model: %d %s", code, body)
	}
}
