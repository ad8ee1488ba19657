package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

// TestSleepInsteadOfStopEndToEnd: two mocks serving vLLM's sleep
// endpoints (sleep's preset vllm), with memory for one awake beside the other
// asleep. Requests alternate: the one in the way is put to sleep, then
// woken, never stopped; /admin/models, llama.cpp's /models, the dry run
// and /metrics say so.
func TestSleepInsteadOfStopEndToEnd(t *testing.T) {
	bin := build(t)
	_, url, logs := startLogged(t, bin, writeConfig(t, bin, `
ports: 22000-22999
memory: {limit_ram: 400MiB}
models:
  a:
    cmd: MOCK -port ${PORT} -model ${MODEL} -hold 200MiB -sleep-mode -wake-time 50ms -progress-interval 0
    memory: {ram: 220MiB}
    sleep: {preset: vllm, memory: {ram: 48MiB}}
  b:
    cmd: MOCK -port ${PORT} -model ${MODEL} -hold 200MiB -sleep-mode -wake-time 50ms -progress-interval 0
    memory: {ram: 220MiB}
    sleep: {preset: vllm, memory: {ram: 48MiB}}
`))
	c := client{t, url, ""}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hotswap's log:\n%s", logs.String())
		}
	})
	pidA := c.chat("a")
	pidB := c.chat("b")
	ms := c.models()
	if ms["a"].State != "asleep" || ms["a"].Pid != pidA || ms["b"].State != "ready" {
		t.Fatalf("after b: a %s (pid %d, was %d), b %s", ms["a"].State, ms["a"].Pid, pidA, ms["b"].State)
	}
	if s := ms["a"].Sleep; s == nil || s.RAM <= 0 {
		t.Errorf("a's sleep status: %+v", s)
	}

	// llama.cpp's router says sleeping, as it does of a child asleep.
	for model, want := range map[string]string{"a": "sleeping", "b": "loaded"} {
		if got := llamaStatus(c, model); got != want {
			t.Errorf("GET /models: %s is %q, want %q", model, got, want)
		}
	}

	// The dry run: a request for a wakes it, putting b to sleep.
	var plan swapper.DryRun
	c.json("GET", "/admin/plan?model=a", "", 200, &plan)
	if plan.Action != swapper.PlanStart || !plan.Wake || len(plan.Evict) != 1 || plan.Evict[0].Model != "b" || !plan.Evict[0].Sleep ||
		!strings.Contains(plan.Evict[0].Reason, "sleep") {
		t.Errorf("plan for a: %+v", plan)
	}

	for range 2 {
		if p := c.chat("a"); p != pidA {
			t.Fatalf("a answered from pid %d, not its asleep process %d", p, pidA)
		}
		if p := c.chat("b"); p != pidB {
			t.Fatalf("b answered from pid %d, not its asleep process %d", p, pidB)
		}
	}
	if s := c.models()["a"].Sleep; s == nil || s.WakeSeconds < 0.05 {
		t.Errorf("a's wake time: %+v, want at least the mock's 50ms", s)
	}
	for series, want := range map[string]float64{
		`hotswap_backend_starts_total{model="a"}`: 1,
		`hotswap_backend_wakes_total{model="a"}`:  2,
		`hotswap_backend_sleeps_total{model="a"}`: 3,
		`hotswap_backend_sleeps_total{model="b"}`: 2,
	} {
		// An event is published as the backend sleeps or starts, and
		// the request it made room for may be answered first.
		if !mocktest.Eventually(5*time.Second, func() bool { got, ok := c.metric(series); return ok && got == want }) {
			got, ok := c.metric(series)
			t.Errorf("%s = %v (%v), want %v", series, got, ok, want)
		}
	}
	if !strings.Contains(logs.String(), "\tbackend asleep\t") || !strings.Contains(logs.String(), "\tbackend awake\t") {
		t.Errorf("the log does not say a backend slept and woke:\n%s", logs.String())
	}
}
