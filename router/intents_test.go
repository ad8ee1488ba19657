package router

import (
	"errors"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/swapper"
)

// loadArrives queues an operator's load of model at t0+at and schedules.
func (h *harness) loadArrives(model string, at time.Duration, o LoadOptions) *Ticket {
	tk := &Ticket{model: model, enqueued: t0.Add(at), signal: make(chan struct{}, 1), load: &o}
	h.s.handle(event{kind: evArrive, t: tk}, t0.Add(at))
	h.s.schedule(t0.Add(at))
	return tk
}

// TestLoadCountsItsProtectedModelsAsBusy: a mode's load is decided with
// the models of its mode counted as busy, as the scheduler sees them when
// it decides (not a snapshot taken before): it stops an idle model outside
// the mode, never one in it, and is refused at once rather than wait.
func TestLoadCountsItsProtectedModelsAsBusy(t *testing.T) {
	for _, policy := range []string{config.PolicyBatch, config.PolicyFIFO} {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t, policy, map[string]int{"a": 1, "b": 1, "c": 1})
			h.f.states["a"], h.f.states["b"] = swapper.Ready, swapper.Ready
			h.f.evict["c"] = []string{"a"}
			// c would stop a, which is in the mode: refused, nothing stopped.
			tk := h.loadArrives("c", 0, LoadOptions{Protect: []string{"a", "c"}, Refuse: true, Reason: "mode m"})
			var be *swapper.BusyError
			if !h.decided(tk) || !errors.As(tk.err, &be) || len(be.Busy) != 1 || be.Busy[0] != "a" {
				t.Fatalf("a load that would stop a protected model: %v", tk.err)
			}
			if len(h.f.started) != 0 || h.f.states["a"] != swapper.Ready {
				t.Fatalf("starts %v, a %v", h.f.started, h.f.states["a"])
			}
			if n := len(h.s.models["c"].queue); n != 0 {
				t.Fatalf("%d left queued for c", n)
			}
			// Stopping b, idle and outside the mode, is allowed.
			h.f.evict["c"] = []string{"b"}
			tk = h.loadArrives("c", time.Second, LoadOptions{Protect: []string{"a", "c"}, Refuse: true, Reason: "mode m"})
			if h.decided(tk) {
				t.Fatalf("decided before c is ready: %v", tk.err)
			}
			if len(h.f.started) != 1 || h.f.states["b"] != swapper.Draining {
				t.Fatalf("starts %v, b %v", h.f.started, h.f.states["b"])
			}
			// The decision is said once the lock is let go, with the load's reason.
			fx := h.s.fx.take()
			if len(fx.swaps) != 1 || fx.swaps[0].model != "c" || fx.swaps[0].reason != "mode m" ||
				len(fx.swaps[0].d.Victims) != 1 || fx.swaps[0].d.Victims[0] != "b" {
				t.Errorf("effects %+v", fx)
			}
			h.f.states["c"] = swapper.Ready
			h.changed(2 * time.Second)
			h.wantGranted(tk, true)
		})
	}
}

// TestLoadNeverDrainsABusyModel: a request waits max_wait and then drains a
// busy model; a mode's load does not, however long it waits.
func TestLoadNeverDrainsABusyModel(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "c": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["c"] = []string{"a"}
	inA := h.arrive("a", 0)
	h.wantGranted(inA, true)
	tk := h.loadArrives("c", 0, LoadOptions{Protect: []string{"c"}, Reason: "mode m"})
	h.changed(time.Hour) // far past max_wait
	if h.decided(tk) || len(h.f.started) != 0 {
		t.Fatalf("a load drained a busy model: decided %v, starts %v", tk.err, h.f.started)
	}
	// Once a is idle (and past its grace), it goes.
	h.done(inA, time.Hour)
	h.changed(time.Hour + 2*time.Second)
	if len(h.f.started) != 1 || h.f.started[0] != "c" {
		t.Fatalf("starts %v once a was idle", h.f.started)
	}
}

// TestRefusedLoadLeavesTheRequestsBehindIt: a refused load is taken out of
// its queue; a request behind it is decided on its own terms.
func TestRefusedLoadLeavesTheRequestsBehindIt(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "c": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["c"] = []string{"a"}
	inA := h.arrive("a", 0)
	h.wantGranted(inA, true)
	h.s.models["c"].queue = nil
	load := &Ticket{model: "c", enqueued: t0, signal: make(chan struct{}, 1), load: &LoadOptions{Refuse: true}}
	req := &Ticket{model: "c", enqueued: t0, signal: make(chan struct{}, 1)}
	h.s.handle(event{kind: evArrive, t: load}, t0)
	h.s.handle(event{kind: evArrive, t: req}, t0)
	h.s.schedule(t0)
	if !h.decided(load) || load.err == nil {
		t.Fatal("the load was not refused")
	}
	if h.decided(req) {
		t.Fatalf("the request behind it was decided: %v", req.err)
	}
	// The request waits max_wait, as requests do, then drains a.
	h.changed(11 * time.Second)
	if len(h.f.started) != 1 || h.f.states["a"] != swapper.Draining {
		t.Fatalf("starts %v, a %v", h.f.started, h.f.states["a"])
	}
}

// TestPlainLoadIsARequest: a load with no options waits and drains as a
// request does (an operator asked for that model, as a client would).
func TestPlainLoadIsARequest(t *testing.T) {
	h := newHarness(t, config.PolicyBatch, map[string]int{"a": 1, "c": 1})
	h.f.states["a"] = swapper.Ready
	h.f.evict["c"] = []string{"a"}
	inA := h.arrive("a", 0)
	h.wantGranted(inA, true)
	tk := h.loadArrives("c", 0, LoadOptions{Reason: "load"})
	h.changed(11 * time.Second) // past max_wait
	if len(h.f.started) != 1 || h.f.states["a"] != swapper.Draining || h.decided(tk) {
		t.Fatalf("starts %v, a %v", h.f.started, h.f.states["a"])
	}
}
