package metrics_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/metrics"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

func TestComputeLoRAInfo(t *testing.T) {
	a := metrics.EndpointModel{ID: "a", Names: []string{"a", "gpt-4o-mini", "a-fast"}}
	b := metrics.EndpointModel{ID: "b", Names: []string{"b"}}
	c := metrics.EndpointModel{ID: "c", Names: []string{"c", "c2"}}
	with := func(m metrics.EndpointModel, st swapper.State, queued int64, fits bool) metrics.EndpointModel {
		m.State, m.Queued, m.Fits = st, queued, fits
		return m
	}
	for _, tc := range []struct {
		name             string
		models           []metrics.EndpointModel
		leaving          bool
		running, waiting []string
		max              int
	}{
		{name: "nothing loaded, one fits",
			models:  []metrics.EndpointModel{with(a, swapper.Stopped, 0, true), with(b, swapper.Stopped, 0, false)},
			running: []string{}, waiting: []string{}, max: 1},
		{name: "nothing loaded, nothing fits",
			models:  []metrics.EndpointModel{with(a, swapper.Stopped, 0, false), b},
			running: []string{}, waiting: []string{}, max: 0},
		{name: "loaded with aliases and variants, another fits",
			models:  []metrics.EndpointModel{with(a, swapper.Ready, 0, false), with(b, swapper.Stopped, 0, true), c},
			running: []string{"a", "gpt-4o-mini", "a-fast"}, waiting: []string{}, max: 4},
		{name: "loaded, nothing else fits",
			models:  []metrics.EndpointModel{with(a, swapper.Ready, 0, false), b, c},
			running: []string{"a", "gpt-4o-mini", "a-fast"}, waiting: []string{}, max: 3},
		{name: "starting is waiting",
			models:  []metrics.EndpointModel{with(a, swapper.Ready, 0, false), with(c, swapper.Starting, 0, false), b},
			running: []string{"a", "gpt-4o-mini", "a-fast"}, waiting: []string{"c", "c2"}, max: 5},
		{name: "queued while stopped, draining or stopping is waiting",
			models: []metrics.EndpointModel{with(a, swapper.Stopped, 2, false), with(b, swapper.Draining, 1, false),
				with(c, swapper.Stopping, 1, false)},
			running: []string{}, waiting: []string{"a", "gpt-4o-mini", "a-fast", "b", "c", "c2"}, max: 6},
		{name: "draining without a queue is nowhere",
			models:  []metrics.EndpointModel{with(b, swapper.Draining, 0, false)},
			running: []string{}, waiting: []string{}, max: 0},
		{name: "asleep and going to sleep are waiting, never running",
			models:  []metrics.EndpointModel{with(a, swapper.Asleep, 0, false), with(c, swapper.Sleeping, 0, false), b},
			running: []string{}, waiting: []string{"a", "gpt-4o-mini", "a-fast", "c", "c2"}, max: 5},
		{name: "queued for a ready model is still running",
			models:  []metrics.EndpointModel{with(b, swapper.Ready, 3, false)},
			running: []string{"b"}, waiting: []string{}, max: 1},
		{name: "fits is only asked of models elsewhere",
			models:  []metrics.EndpointModel{with(b, swapper.Ready, 0, true), with(c, swapper.Starting, 0, true)},
			running: []string{"b"}, waiting: []string{"c", "c2"}, max: 3},
		{name: "leaving claims no room",
			models:  []metrics.EndpointModel{with(b, swapper.Ready, 0, false), with(a, swapper.Stopped, 0, true)},
			leaving: true, running: []string{"b"}, waiting: []string{}, max: 1},
		{name: "no models", running: []string{}, waiting: []string{}, max: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := metrics.ComputeLoRAInfo(tc.models, tc.leaving)
			if !slices.Equal(got.Running, tc.running) || !slices.Equal(got.Waiting, tc.waiting) || got.Max != tc.max {
				t.Errorf("got running %q waiting %q max %d; want %q %q %d",
					got.Running, got.Waiting, got.Max, tc.running, tc.waiting, tc.max)
			}
		})
	}
}

func TestMemoryUsage(t *testing.T) {
	const gib = int64(1 << 30)
	for _, tc := range []struct {
		name string
		devs []swapper.DeviceReport
		want float64
	}{
		{name: "no devices", want: 0},
		{name: "ram within limit_ram",
			devs: []swapper.DeviceReport{{Device: "ram", Total: 64 * gib, Reserve: gib, Limit: 4 * gib, Available: gib}},
			want: 0.75},
		{name: "ram without a limit: total less the reserve",
			devs: []swapper.DeviceReport{{Device: "ram", Total: 9 * gib, Reserve: gib, Available: 6 * gib}},
			want: 0.25},
		{name: "the fullest device",
			devs: []swapper.DeviceReport{{Device: "ram", Total: 9 * gib, Reserve: gib, Available: 6 * gib},
				{Device: "gpu0", Total: 24 * gib, Reserve: 0, Available: 6 * gib}},
			want: 0.75},
		{name: "clamped: reservations past the budget",
			devs: []swapper.DeviceReport{{Device: "ram", Total: 8 * gib, Limit: 2 * gib, Available: -gib}},
			want: 1},
		{name: "clamped: more available than the budget",
			devs: []swapper.DeviceReport{{Device: "gpu0", Total: 8 * gib, Reserve: 2 * gib, Available: 7 * gib}},
			want: 0},
		{name: "a device with no budget is skipped",
			devs: []swapper.DeviceReport{{Device: "gpu0", Total: gib, Reserve: 2 * gib}},
			want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := metrics.MemoryUsage(tc.devs); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// fakePlanner answers dry runs from a table.
type fakePlanner map[string]swapper.DryRun

func (p fakePlanner) DryRun(model string, _ swapper.DryRunOptions) (swapper.DryRun, error) {
	d, ok := p[model]
	if !ok {
		return swapper.DryRun{}, errors.New("unknown")
	}
	return d, nil
}

func TestEndpointScrape(t *testing.T) {
	cfg := &config.Config{
		ModelIDs: []string{"a", "b", "c"},
		Models: map[string]*config.Model{
			"a": {ID: "a", Aliases: []string{"alias-a"},
				Variants: []*config.Variant{{ID: "a-fast", Model: "a", Aliases: []string{"quick"}}}},
			"b": {ID: "b"},
			"c": {ID: "c"},
		},
	}
	const gib = int64(1 << 30)
	src := &fakeSource{
		statuses: []swapper.Status{{Model: "a", State: swapper.Ready, InFlight: 2}, {Model: "b", State: swapper.Stopped},
			{Model: "c", State: swapper.Stopped}},
		memory: []swapper.DeviceReport{{Device: "ram", Total: 16 * gib, Limit: 2 * gib, Available: gib / 2}},
	}
	qa, qb := &router.Stats{}, &router.Stats{}
	qa.Queued.Store(1)
	qa.InFlight.Store(2)
	qb.Queued.Store(0)
	planner := fakePlanner{
		"b": {Action: swapper.PlanStart, Evict: []swapper.DryRunEviction{{Model: "a"}}},
		"c": {Action: swapper.PlanStart},
	}
	clk := clock.NewFake(time.Unix(1_700_000_000, 500_000_000))
	e := metrics.NewEndpoint(metrics.EndpointOptions{Config: cfg, Source: src,
		Queues: fakeQueues{"a": qa, "b": qb}, Planner: planner, Clock: clk})

	fams := scrapeEndpoint(t, e)
	info := find(fams, metrics.EndpointLoRAInfo, "running_lora_adapters", "a,alias-a,a-fast,quick",
		"waiting_lora_adapters", "", "max_lora", "5")
	if info == nil {
		t.Fatalf("no LoRA-info series with a loaded, c fitting; got %v", fams[metrics.EndpointLoRAInfo])
	}
	if got := info.GetGauge().GetValue(); got != 1_700_000_000.5 {
		t.Errorf("LoRA-info value %v, want the time of the change", got)
	}
	if n := len(fams[metrics.EndpointLoRAInfo].Metric); n != 1 {
		t.Errorf("%d LoRA-info series, want 1", n)
	}
	for name, want := range map[string]float64{
		metrics.EndpointWaiting:     1, // queued for a; the two in flight are on its backend
		metrics.EndpointRunning:     2,
		metrics.EndpointMemoryUsage: 0.75,
		metrics.EndpointLeaving:     0,
	} {
		if got := value(t, fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// Unchanged: the same time. Then c no longer fits, and b queues while
	// stopped: a new time.
	clk.Advance(time.Second)
	if got := find(scrapeEndpoint(t, e), metrics.EndpointLoRAInfo, "running_lora_adapters", "a,alias-a,a-fast,quick",
		"waiting_lora_adapters", "", "max_lora", "5").GetGauge().GetValue(); got != 1_700_000_000.5 {
		t.Errorf("unchanged LoRA-info dated %v, want the first change", got)
	}
	planner["c"] = swapper.DryRun{Action: swapper.PlanWait}
	qb.Queued.Store(1)
	clk.Advance(time.Second)
	info = find(scrapeEndpoint(t, e), metrics.EndpointLoRAInfo, "running_lora_adapters", "a,alias-a,a-fast,quick",
		"waiting_lora_adapters", "b", "max_lora", "5")
	if info == nil {
		t.Fatal("no LoRA-info series with b waiting and no room")
	}
	if got := info.GetGauge().GetValue(); got != 1_700_000_002.5 {
		t.Errorf("changed LoRA-info dated %v, want now", got)
	}

	e.Leave()
	if got := value(t, scrapeEndpoint(t, e), metrics.EndpointLeaving); got != 1 {
		t.Errorf("%s = %v while leaving, want 1", metrics.EndpointLeaving, got)
	}
}

// scrapeEndpoint serves e on a real listener and parses a GET of it as
// the EPP's scraper does (legacy metric names).
func scrapeEndpoint(t *testing.T, e *metrics.Endpoint) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeHandler(t, e.Handler(), "/metrics/endpoint", model.LegacyValidation)
}
