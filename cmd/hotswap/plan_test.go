package main

import (
	"testing"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

// GET /admin/plan, through the binary: a dry run names what a request
// would evict, and evicts nothing.
func TestPlanNamesTheEvictionAndDoesNothing(t *testing.T) {
	b := build(t)
	cfg := writeConfig(t, b, `
ports: 22000-22999
stop_timeout: 2s
memory: {limit_ram: 50MiB}   # a and b do not fit together
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 30MiB}}
  b:
    cmd: MOCK -port ${PORT} -model ${MODEL}
    aliases: [beta]
    memory: {ram: 30MiB}
`)
	_, url := start(t, b, cfg)
	c := client{t: t, url: url}
	pidA := c.chat("a")

	var d swapper.DryRun
	c.json("GET", "/admin/plan?model=beta", "", 200, &d)
	if d.Model != "b" || d.Action != swapper.PlanStart || d.Device != "ram" || len(d.Evict) != 1 || d.Evict[0].Model != "a" ||
		d.Evict[0].Reason == "" || d.Need.RAM != 30<<20 {
		t.Fatalf("plan %+v: want b started on ram, evicting a", d)
	}
	var ready swapper.DryRun
	c.json("GET", "/admin/plan?model=a", "", 200, &ready)
	if ready.Action != swapper.PlanReady {
		t.Errorf("plan for a: %+v, want ready", ready)
	}

	// Nothing happened: a still runs, b was not started.
	var running []struct{ Model, State string }
	c.json("GET", "/admin/running", "", 200, &running)
	if len(running) != 1 || running[0].Model != "a" || running[0].State != "ready" || !mocktest.Alive(pidA) {
		t.Errorf("after the dry run: %+v (a alive: %v)", running, mocktest.Alive(pidA))
	}

	code, body, _ := c.do("GET", "/admin/plan?model=nope", "")
	if code != 404 || errCode(body) != "model_not_found" {
		t.Errorf("unknown model: %d %s", code, body)
	}
	code, body, _ = c.do("GET", "/admin/plan", "")
	if code != 400 {
		t.Errorf("no model: %d %s", code, body)
	}
	code, _, _ = c.do("POST", "/admin/plan?model=a", "")
	if code != 405 {
		t.Errorf("POST: %d, want 405", code)
	}
}
