package metrics_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/metrics"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/state"
	"github.com/hotswap/hotswap/swapper"
)

// fakeSource is a swapper as the metrics see it.
type fakeSource struct {
	mu         sync.Mutex
	statuses   []swapper.Status
	memory     []swapper.DeviceReport
	footprints map[string]state.Footprint
	freshCalls int
}

func (f *fakeSource) Statuses() []swapper.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]swapper.Status(nil), f.statuses...)
}

func (f *fakeSource) Memory(fresh bool) []swapper.DeviceReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fresh {
		f.freshCalls++
	}
	return append([]swapper.DeviceReport(nil), f.memory...)
}

func (f *fakeSource) Footprint(model string) state.Footprint {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.footprints[model]
}

// fakeQueues is a router as the metrics see it.
type fakeQueues map[string]*router.Stats

func (q fakeQueues) Stats(model string) *router.Stats { return q[model] }

// scrape serves m's handler on a real listener and parses what a GET of it
// returns.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeHandler(t, m.Handler(), "/metrics", model.UTF8Validation)
}

// scrapeHandler serves h on a real listener, GETs path and parses the
// answer with the validation given (the EPP's scraper takes legacy names).
func scrapeHandler(t *testing.T, h fasthttp.RequestHandler, path string, validation model.ValidationScheme) map[string]*dto.MetricFamily {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + ln.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", path, resp.Status, err, body)
	}
	parser := expfmt.NewTextParser(validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, body)
	}
	return fams
}

// find is the series of name with exactly labels (given as name, value
// pairs), or nil.
func find(fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.Metric {
		if len(m.Label) != len(want) {
			continue
		}
		ok := true
		for _, l := range m.Label {
			if v, has := want[l.GetName()]; !has || v != l.GetValue() {
				ok = false
				break
			}
		}
		if ok {
			return m
		}
	}
	return nil
}

// value is the value of a counter or gauge series; it fails t if there is
// none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := find(fams, name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no series %s%v", name, labels)
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

// histogram is the count and sum of a histogram series; it fails t if
// there is none.
func histogram(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) (uint64, float64) {
	t.Helper()
	m := find(fams, name, labels...)
	if m == nil || m.Histogram == nil {
		t.Fatalf("no histogram %s%v", name, labels)
	}
	return m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()
}

// labelValues lists the values label takes in name's series, sorted.
func labelValues(fams map[string]*dto.MetricFamily, name, label string) []string {
	seen := map[string]bool{}
	if f := fams[name]; f != nil {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == label {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestRequests(t *testing.T) {
	m := metrics.New([]string{"llama", "qwen"}, nil, nil)
	m.Request("llama", "chat/completions", 200, 50*time.Millisecond)
	m.Request("llama", "chat/completions", 200, 150*time.Millisecond)
	m.Request("llama", "chat/completions", 503, time.Second)
	m.Request("qwen", "embeddings", 200, 10*time.Millisecond)
	m.Request("nobody-configured-this", "completions", 404, time.Millisecond)
	m.Request("", "models", 200, time.Millisecond)
	m.Request("llama", "completions", 7, time.Millisecond) // not an HTTP status

	f := scrape(t, m)
	for _, c := range []struct {
		model, endpoint, status string
		want                    float64
	}{
		{"llama", "chat/completions", "200", 2},
		{"llama", "chat/completions", "503", 1},
		{"qwen", "embeddings", "200", 1},
		{"other", "completions", "404", 1},
		{"other", "models", "200", 1},
		{"llama", "completions", "other", 1},
	} {
		if got := value(t, f, "hotswap_requests_total", "model", c.model, "endpoint", c.endpoint, "status", c.status); got != c.want {
			t.Errorf("requests{%s,%s,%s} = %v, want %v", c.model, c.endpoint, c.status, got, c.want)
		}
	}
	if got := labelValues(f, "hotswap_requests_total", "model"); fmt.Sprint(got) != "[llama other qwen]" {
		t.Errorf("model labels = %v, want [llama other qwen]", got)
	}

	n, sum := histogram(t, f, "hotswap_request_duration_seconds", "model", "llama", "endpoint", "chat/completions")
	if n != 3 || !near(sum, 1.2) {
		t.Errorf("duration{llama,chat/completions}: count %d sum %v, want 3 and 1.2", n, sum)
	}
	// The buckets must reach a long generation, and the largest finite
	// one hold every observation here.
	h := find(f, "hotswap_request_duration_seconds", "model", "llama", "endpoint", "chat/completions").Histogram
	last := h.Bucket[len(h.Bucket)-1]
	if last.GetUpperBound() < 600-1e-6 || last.GetCumulativeCount() != 3 {
		t.Errorf("last bucket le=%v count %d, want le>=600 and 3", last.GetUpperBound(), last.GetCumulativeCount())
	}
	if h.Bucket[0].GetUpperBound() > 0.005+1e-9 {
		t.Errorf("first bucket le=%v, want 0.005", h.Bucket[0].GetUpperBound())
	}
}

func TestEndpointsAreBounded(t *testing.T) {
	m := metrics.New([]string{"llama"}, nil, nil)
	for i := range 40 {
		m.Request("llama", fmt.Sprintf("endpoint-%d", i), 200, time.Millisecond)
	}
	// Endpoints already seen keep their own series after the limit.
	m.Request("llama", "endpoint-0", 200, time.Millisecond)

	f := scrape(t, m)
	if got := len(labelValues(f, "hotswap_requests_total", "endpoint")); got != 33 {
		t.Errorf("%d endpoint labels, want 32 and other", got)
	}
	if got := value(t, f, "hotswap_requests_total", "model", "llama", "endpoint", "other", "status", "200"); got != 8 {
		t.Errorf("requests{endpoint=other} = %v, want 8", got)
	}
	if got := value(t, f, "hotswap_requests_total", "model", "llama", "endpoint", "endpoint-0", "status", "200"); got != 2 {
		t.Errorf("requests{endpoint=endpoint-0} = %v, want 2", got)
	}
}

func TestWaits(t *testing.T) {
	m := metrics.New([]string{"llama"}, nil, nil)
	m.Waited("llama", "queued", 100*time.Millisecond)
	m.Waited("llama", "queued", 300*time.Millisecond)
	m.Waited("llama", "loading", 20*time.Second)
	m.Waited("llama", "bored", time.Second)
	m.Waited("ghost", "loading", time.Second)

	f := scrape(t, m)
	for _, c := range []struct {
		model, cause string
		n            uint64
		sum          float64
	}{
		{"llama", "queued", 2, 0.4},
		{"llama", "loading", 1, 20},
		{"llama", "other", 1, 1},
		{"other", "loading", 1, 1},
	} {
		n, sum := histogram(t, f, "hotswap_wait_seconds", "model", c.model, "cause", c.cause)
		if n != c.n || !near(sum, c.sum) {
			t.Errorf("wait{%s,%s}: count %d sum %v, want %d and %v", c.model, c.cause, n, sum, c.n, c.sum)
		}
	}
}

func TestEvents(t *testing.T) {
	m := metrics.New([]string{"llama", "qwen"}, nil, nil)
	m.Listen(nil) // a proxy without a hub

	// Before anything happens, the counters a dashboard plots are there,
	// at zero.
	f := scrape(t, m)
	for _, name := range []string{"hotswap_backend_starts_total", "hotswap_backend_crashes_total", "hotswap_insufficient_memory_total"} {
		for _, id := range []string{"llama", "qwen"} {
			if got := value(t, f, name, "model", id); got != 0 {
				t.Errorf("%s{%s} = %v before any event, want 0", name, id, got)
			}
		}
	}
	if got := value(t, f, "hotswap_evictions_total", "model", "qwen", "reason", "ttl"); got != 0 {
		t.Errorf("evictions{qwen,ttl} = %v before any event, want 0", got)
	}

	h := events.NewHub(nil)
	m.Listen(h)
	for _, e := range []events.Event{
		{Type: events.Start, Model: "llama"},
		{Type: events.Start, Model: "llama"},
		{Type: events.Start, Model: "ghost"},
		{Type: events.Ready, Model: "llama", Data: map[string]any{"pid": 12, "seconds": 2.5}},
		{Type: events.Ready, Model: "llama", Data: map[string]any{"seconds": 1500 * time.Millisecond}},
		{Type: events.Ready, Model: "llama", Data: map[string]any{"seconds": "soon"}}, // not a number: not observed
		{Type: events.Ready, Model: "llama", Data: map[string]any{"seconds": -1.0}},   // nor a negative one
		{Type: events.Ready, Model: "llama"},                                          // no data: not observed
		{Type: events.Fail, Model: "llama", Data: map[string]any{"cause": "exited"}},
		{Type: events.Fail, Model: "llama", Data: map[string]any{"cause": "exited"}},
		{Type: events.Fail, Model: "qwen", Data: map[string]any{"cause": "out_of_memory"}},
		{Type: events.Fail, Model: "qwen"},
		{Type: events.Evict, Model: "llama", Data: map[string]any{"reason": "making room", "for": "qwen"}},
		{Type: events.Evict, Model: "llama", Data: map[string]any{"reason": "ttl"}},
		{Type: events.Evict, Model: "qwen", Data: map[string]any{"reason": "the moon was full"}},
		{Type: events.Unload, Model: "qwen", Data: map[string]any{"force": true}},
		{Type: events.Cooldown, Model: "qwen", Data: map[string]any{"seconds": 0.25}},
		{Type: events.Cooldown, Model: "qwen", Data: map[string]any{"seconds": 2 * time.Second}},
		{Type: events.Refuse, Model: "qwen", Message: "qwen needs 80GiB of VRAM"},
		{Type: events.Crash, Model: "llama", Data: map[string]any{"exit": "killed by signal 9"}},
		{Type: events.Stop, Model: "llama", Data: map[string]any{"seconds": 1.0}},
		{Type: events.Log, Message: "not counted"},
		// A wake is no start: counted, and timed, apart.
		{Type: events.Start, Model: "qwen", Data: map[string]any{"wake": true}},
		{Type: events.Ready, Model: "qwen", Data: map[string]any{"seconds": 0.5, "wake": true}},
		{Type: events.Asleep, Model: "qwen", Data: map[string]any{"seconds": 0.1}},
		{Type: events.Asleep, Model: "qwen", Data: map[string]any{"seconds": 0.1}},
		{Type: events.SleepFailed, Model: "llama", Data: map[string]any{"action": "wake", "fallback": "restart"}},
		{Type: events.SleepFailed, Model: "llama", Data: map[string]any{"action": "nap"}}, // not an action: not counted
	} {
		h.Publish(e)
	}

	f = scrape(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hotswap_backend_starts_total", []string{"model", "llama"}, 2},
		{"hotswap_backend_starts_total", []string{"model", "qwen"}, 0},
		{"hotswap_backend_starts_total", []string{"model", "other"}, 1},
		{"hotswap_backend_start_failures_total", []string{"model", "llama", "cause", "exited"}, 2},
		{"hotswap_backend_start_failures_total", []string{"model", "qwen", "cause", "out_of_memory"}, 1},
		{"hotswap_backend_start_failures_total", []string{"model", "qwen", "cause", "other"}, 1},
		{"hotswap_evictions_total", []string{"model", "llama", "reason", "making_room"}, 1},
		{"hotswap_evictions_total", []string{"model", "llama", "reason", "ttl"}, 1},
		{"hotswap_evictions_total", []string{"model", "llama", "reason", "unload"}, 0},
		{"hotswap_evictions_total", []string{"model", "qwen", "reason", "other"}, 1},
		{"hotswap_evictions_total", []string{"model", "qwen", "reason", "unload"}, 1},
		{"hotswap_insufficient_memory_total", []string{"model", "qwen"}, 1},
		{"hotswap_insufficient_memory_total", []string{"model", "llama"}, 0},
		{"hotswap_backend_crashes_total", []string{"model", "llama"}, 1},
		{"hotswap_backend_crashes_total", []string{"model", "qwen"}, 0},
		{"hotswap_backend_wakes_total", []string{"model", "qwen"}, 1},
		{"hotswap_backend_sleeps_total", []string{"model", "qwen"}, 2},
		{"hotswap_backend_sleep_failures_total", []string{"model", "llama", "action", "wake"}, 1},
	} {
		if got := value(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n, sum := histogram(t, f, "hotswap_backend_start_seconds", "model", "llama"); n != 2 || !near(sum, 4) {
		t.Errorf("start_seconds{llama}: count %d sum %v, want 2 and 4", n, sum)
	}
	if n, sum := histogram(t, f, "hotswap_backend_wake_seconds", "model", "qwen"); n != 1 || !near(sum, 0.5) {
		t.Errorf("wake_seconds{qwen}: count %d sum %v, want 1 and 0.5", n, sum)
	}
	for _, mt := range f["hotswap_backend_start_seconds"].GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "model" && l.GetValue() == "qwen" {
				t.Errorf("start_seconds{qwen} observed %d: its wake is not a start", mt.GetHistogram().GetSampleCount())
			}
		}
	}
	if n, sum := histogram(t, f, "hotswap_cooldown_seconds"); n != 2 || !near(sum, 2.25) {
		t.Errorf("cooldown_seconds: count %d sum %v, want 2 and 2.25", n, sum)
	}
}

func TestLive(t *testing.T) {
	const gib = 1 << 30
	src := &fakeSource{
		statuses: []swapper.Status{
			{Model: "llama", State: swapper.Ready},
			{Model: "qwen", State: swapper.Starting},
			{Model: "mistral", State: swapper.Draining},
			// Not configured (a reload under way), but loaded all the same.
			{Model: "stray", State: swapper.Ready},
			// "phi" is configured but unknown to the swapper: stopped.
		},
		memory: []swapper.DeviceReport{
			{Device: "ram", Total: 64 * gib, Free: 40 * gib, Available: 30 * gib,
				Used: map[string]int64{"llama": 2 * gib}},
			{Device: "gpu0", Name: "H100", Total: 80 * gib, Free: 10 * gib, Available: -1 * gib,
				Used: map[string]int64{"llama": 20 * gib, "stray": 3 * gib, "lost": 4 * gib}},
		},
		footprints: map[string]state.Footprint{
			"llama": {RAM: 2 * gib, VRAM: 21 * gib},
			"qwen":  {RAM: gib},
		},
	}
	q := fakeQueues{"llama": new(router.Stats), "qwen": new(router.Stats)}
	q["llama"].Queued.Store(3)
	q["llama"].InFlight.Store(2)
	q["qwen"].Queued.Store(7)

	m := metrics.New([]string{"llama", "qwen", "mistral", "phi"}, src, q)
	f := scrape(t, m)

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hotswap_queue_depth", []string{"model", "llama"}, 3},
		{"hotswap_in_flight", []string{"model", "llama"}, 2},
		{"hotswap_queue_depth", []string{"model", "qwen"}, 7},
		{"hotswap_in_flight", []string{"model", "qwen"}, 0},
		{"hotswap_memory_total_bytes", []string{"device", "ram"}, 64 * gib},
		{"hotswap_memory_free_bytes", []string{"device", "ram"}, 40 * gib},
		{"hotswap_memory_available_bytes", []string{"device", "ram"}, 30 * gib},
		{"hotswap_memory_total_bytes", []string{"device", "gpu0"}, 80 * gib},
		{"hotswap_memory_free_bytes", []string{"device", "gpu0"}, 10 * gib},
		{"hotswap_memory_available_bytes", []string{"device", "gpu0"}, -1 * gib},
		{"hotswap_memory_used_bytes", []string{"device", "ram", "model", "llama"}, 2 * gib},
		{"hotswap_memory_used_bytes", []string{"device", "gpu0", "model", "llama"}, 20 * gib},
		{"hotswap_memory_used_bytes", []string{"device", "gpu0", "model", "other"}, 7 * gib},
		{"hotswap_footprint_bytes", []string{"model", "llama", "device", "ram"}, 2 * gib},
		{"hotswap_footprint_bytes", []string{"model", "llama", "device", "vram"}, 21 * gib},
		{"hotswap_footprint_bytes", []string{"model", "qwen", "device", "ram"}, gib},
		{"hotswap_models_loaded", nil, 2},
		{"hotswap_model_state", []string{"model", "llama", "state", "ready"}, 1},
		{"hotswap_model_state", []string{"model", "qwen", "state", "starting"}, 1},
		{"hotswap_model_state", []string{"model", "mistral", "state", "draining"}, 1},
		{"hotswap_model_state", []string{"model", "phi", "state", "stopped"}, 1},
	} {
		if got := value(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// A model with no queue has no queue series, and a footprint not yet
	// learned has none either.
	if find(f, "hotswap_queue_depth", "model", "mistral") != nil {
		t.Error("queue_depth{mistral} reported for a model the router does not know")
	}
	if find(f, "hotswap_footprint_bytes", "model", "qwen", "device", "vram") != nil {
		t.Error("footprint{qwen,vram} reported though it is zero")
	}
	if got := len(f["hotswap_model_state"].GetMetric()); got != 4 {
		t.Errorf("%d model_state series, want one per configured model (4)", got)
	}
	if got := labelValues(f, "hotswap_memory_used_bytes", "model"); fmt.Sprint(got) != "[llama other]" {
		t.Errorf("memory_used model labels = %v, want [llama other]", got)
	}
	if src.freshCalls != 0 {
		t.Errorf("a scrape asked for fresh memory %d times: it must not do I/O", src.freshCalls)
	}

	// The gauges are read at scrape time: the next scrape sees changes.
	q["llama"].Queued.Store(0)
	src.mu.Lock()
	src.statuses[0].State = swapper.Draining
	src.mu.Unlock()
	f = scrape(t, m)
	if got := value(t, f, "hotswap_queue_depth", "model", "llama"); got != 0 {
		t.Errorf("queue_depth{llama} = %v after the queue emptied, want 0", got)
	}
	if find(f, "hotswap_model_state", "model", "llama", "state", "ready") != nil ||
		value(t, f, "hotswap_model_state", "model", "llama", "state", "draining") != 1 {
		t.Error("model_state{llama} did not move from ready to draining")
	}
	if got := value(t, f, "hotswap_models_loaded"); got != 1 {
		t.Errorf("models_loaded = %v, want 1", got)
	}
}

// TestCountersStartAtZero: every counter a dashboard plots per model is
// there before anything happened, for the models configured at the start
// and for one a reload adds; a removed model's series go.
func TestCountersStartAtZero(t *testing.T) {
	m := metrics.New([]string{"llama"}, nil, nil)
	m.SetModels([]string{"llama", "added"})
	// What a fail event can say (the swapper's causes, as the README lists
	// them), and an eviction.
	causes := []string{"out_of_memory", "exited", "not_healthy", "memory_not_back", "not_started"}
	reasons := []string{"making_room", "ttl", "unload", "other"}
	f := scrape(t, m)
	for _, id := range []string{"llama", "added"} {
		for _, name := range []string{"hotswap_backend_starts_total", "hotswap_backend_crashes_total",
			"hotswap_insufficient_memory_total"} {
			if got := value(t, f, name, "model", id); got != 0 {
				t.Errorf("%s{%s} = %v, want 0", name, id, got)
			}
		}
		for _, c := range causes {
			if got := value(t, f, "hotswap_backend_start_failures_total", "model", id, "cause", c); got != 0 {
				t.Errorf("start_failures{%s,%s} = %v, want 0", id, c, got)
			}
		}
		for _, r := range reasons {
			if got := value(t, f, "hotswap_evictions_total", "model", id, "reason", r); got != 0 {
				t.Errorf("evictions{%s,%s} = %v, want 0", id, r, got)
			}
		}
	}
	if got := labelValues(f, "hotswap_backend_start_failures_total", "cause"); !slices.Equal(got, slices.Sorted(slices.Values(causes))) {
		t.Errorf("causes at the start: %v, want %v", got, causes)
	}

	// The causes known from the start keep their series however many
	// strange ones come first.
	h := events.NewHub(nil)
	m.Listen(h)
	for i := range 40 {
		h.Publish(events.Event{Type: events.Fail, Model: "added", Data: map[string]any{"cause": fmt.Sprint("odd", i)}})
	}
	h.Publish(events.Event{Type: events.Fail, Model: "added", Data: map[string]any{"cause": "not_healthy"}})
	m.SetModels([]string{"added"})
	f = scrape(t, m)
	if got := value(t, f, "hotswap_backend_start_failures_total", "model", "added", "cause", "not_healthy"); got != 1 {
		t.Errorf("start_failures{added,not_healthy} = %v after 40 odd causes, want 1", got)
	}
	for _, v := range labelValues(f, "hotswap_backend_start_failures_total", "model") {
		if v == "llama" {
			t.Error("a removed model's start failures are still scraped")
		}
	}
}

func TestSetModels(t *testing.T) {
	src := &fakeSource{statuses: []swapper.Status{{Model: "llama", State: swapper.Ready}}}
	q := fakeQueues{"llama": new(router.Stats), "qwen": new(router.Stats), "gemma": new(router.Stats)}
	m := metrics.New([]string{"llama", "qwen"}, src, q)
	h := events.NewHub(nil)
	m.Listen(h)

	m.Request("llama", "chat/completions", 200, time.Millisecond)
	m.Request("qwen", "chat/completions", 200, time.Millisecond)
	m.Request("gemma", "chat/completions", 200, time.Millisecond) // not configured yet
	h.Publish(events.Event{Type: events.Crash, Model: "llama"})

	m.SetModels([]string{"qwen", "gemma", "gemma"})
	m.Request("gemma", "chat/completions", 200, time.Millisecond)
	m.Request("llama", "chat/completions", 200, time.Millisecond) // gone: other

	f := scrape(t, m)
	for _, name := range []string{"hotswap_requests_total", "hotswap_backend_starts_total",
		"hotswap_backend_crashes_total", "hotswap_model_state", "hotswap_queue_depth", "hotswap_evictions_total"} {
		for _, v := range labelValues(f, name, "model") {
			if v == "llama" {
				t.Errorf("%s still has a series for llama, which left the configuration", name)
			}
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hotswap_requests_total", []string{"model", "qwen", "endpoint", "chat/completions", "status", "200"}, 1},
		{"hotswap_requests_total", []string{"model", "gemma", "endpoint", "chat/completions", "status", "200"}, 1},
		{"hotswap_requests_total", []string{"model", "other", "endpoint", "chat/completions", "status", "200"}, 2},
		{"hotswap_backend_starts_total", []string{"model", "gemma"}, 0},
		{"hotswap_backend_crashes_total", []string{"model", "gemma"}, 0},
		{"hotswap_model_state", []string{"model", "gemma", "state", "stopped"}, 1},
		{"hotswap_model_state", []string{"model", "qwen", "state", "stopped"}, 1},
		{"hotswap_queue_depth", []string{"model", "gemma"}, 0},
	} {
		if got := value(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := len(f["hotswap_model_state"].GetMetric()); got != 2 {
		t.Errorf("%d model_state series, want 2", got)
	}
}

func TestLint(t *testing.T) {
	src := &fakeSource{
		statuses: []swapper.Status{{Model: "llama", State: swapper.Ready}},
		memory:   []swapper.DeviceReport{{Device: "ram", Total: 1 << 30, Free: 1 << 29, Used: map[string]int64{"llama": 1 << 20}}},
		footprints: map[string]state.Footprint{
			"llama": {RAM: 1 << 20, VRAM: 1 << 30},
		},
	}
	m := metrics.New([]string{"llama"}, src, fakeQueues{"llama": new(router.Stats)})
	h := events.NewHub(nil)
	m.Listen(h)
	m.Request("llama", "chat/completions", 200, time.Second)
	m.Waited("llama", "loading", time.Second)
	for _, typ := range []string{events.Start, events.Ready, events.Fail, events.Evict, events.Cooldown, events.Refuse, events.Crash} {
		h.Publish(events.Event{Type: typ, Model: "llama", Data: map[string]any{"seconds": 1.0, "cause": "exited", "reason": "ttl"}})
	}

	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	// Every metric the package promises is there.
	f := scrape(t, m)
	for _, name := range []string{
		"hotswap_requests_total", "hotswap_request_duration_seconds", "hotswap_wait_seconds",
		"hotswap_queue_depth", "hotswap_in_flight",
		"hotswap_backend_starts_total", "hotswap_backend_start_seconds", "hotswap_backend_start_failures_total",
		"hotswap_evictions_total", "hotswap_cooldown_seconds", "hotswap_insufficient_memory_total",
		"hotswap_backend_crashes_total",
		"hotswap_memory_total_bytes", "hotswap_memory_free_bytes", "hotswap_memory_available_bytes",
		"hotswap_memory_used_bytes", "hotswap_footprint_bytes", "hotswap_models_loaded", "hotswap_model_state",
	} {
		if f[name] == nil {
			t.Errorf("%s missing from the scrape", name)
		}
	}
}

// TestConcurrent is for the race detector: requests, events, reloads and
// scrapes at once.
func TestConcurrent(t *testing.T) {
	src := &fakeSource{statuses: []swapper.Status{{Model: "a", State: swapper.Ready}}}
	m := metrics.New([]string{"a", "b"}, src, fakeQueues{"a": new(router.Stats)})
	h := events.NewHub(nil)
	m.Listen(h)

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				id := []string{"a", "b", "c"}[i%3]
				m.Request(id, fmt.Sprintf("e%d", (g*200+i)%50), 200, time.Millisecond)
				m.Waited(id, "queued", time.Millisecond)
				h.Publish(events.Event{Type: events.Start, Model: id})
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			if i%2 == 0 {
				m.SetModels([]string{"a", "c"})
			} else {
				m.SetModels([]string{"a", "b"})
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			if _, err := m.Registry().Gather(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()

	f := scrape(t, m)
	if got := len(labelValues(f, "hotswap_requests_total", "endpoint")); got > 33 {
		t.Errorf("%d endpoint labels, want at most 33", got)
	}
	for _, v := range labelValues(f, "hotswap_requests_total", "model") {
		if v != "a" && v != "b" && v != "other" {
			t.Errorf("requests_total has model %q, configured now: a, b", v)
		}
	}
}
