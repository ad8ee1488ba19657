// Package metrics exposes hotswap's Prometheus metrics: what requests and
// their waits cost, what the lifecycle did (starts, failures, evictions,
// crashes, refusals), and, read at scrape time, the queues, memory, learned
// footprints and the state of every model.
//
// Every label is bounded, so that a client cannot grow the series without
// end: a model label is a configured model or "other", and each free-form
// label (endpoint, failure cause) keeps the first values it sees and calls
// the rest "other".
package metrics

import (
	"maps"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/state"
	"github.com/hotswap/hotswap/swapper"
)

// Source is what the metrics read at scrape time.
type Source interface {
	Statuses() []swapper.Status
	Memory(fresh bool) []swapper.DeviceReport // called with false: the last look, no I/O
	Footprint(model string) state.Footprint
}

// Queues is what the metrics read of the router at scrape time.
type Queues interface {
	Stats(model string) *router.Stats
}

// other stands for every value a bounded label does not keep.
const other = "other"

// Limits on the distinct values of the free-form labels.
const (
	maxEndpoints = 32
	maxCauses    = 16
)

// Metrics records hotswap's metrics in a registry of its own. It is safe
// for concurrent use.
type Metrics struct {
	src Source
	q   Queues
	reg *prometheus.Registry

	// mu guards models. Observations hold it for reading while they pick a
	// model label and record it, so that SetModels, which deletes the
	// series of models that left, cannot race one back into existence.
	mu     sync.RWMutex
	models map[string]bool
	ids    []string // models, in configuration order, for the scrape

	endpoints *labelSet
	causes    *labelSet

	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	wait         *prometheus.HistogramVec
	starts       *prometheus.CounterVec
	startSeconds *prometheus.HistogramVec
	failures     *prometheus.CounterVec
	evictions    *prometheus.CounterVec
	cooldown     prometheus.Histogram
	refusals     *prometheus.CounterVec
	crashes      *prometheus.CounterVec
	// Sleep instead of stop: models put to sleep, woken (and how long a
	// wake took), and sleeps or wakes that failed, by action.
	sleeps        *prometheus.CounterVec
	wakes         *prometheus.CounterVec
	wakeSeconds   *prometheus.HistogramVec
	sleepFailures *prometheus.CounterVec
	// variantRequests counts requests that name a variant, by model and
	// variant; variants (guarded by mu) are the pairs it takes, those the
	// configuration declares.
	variantRequests *prometheus.CounterVec
	variants        map[[2]string]bool

	history history
}

// Eviction reasons: what the swapper says, folded into label values.
var evictReasons = []string{"making_room", "ttl", "unload", other}

// failCauses are the causes a fail event gives (the swapper's failCause),
// each a series at zero from the start for every model.
var failCauses = []string{"out_of_memory", "exited", "not_healthy", "memory_not_back", "not_started"}

// New returns the metrics of a proxy serving models (the configured model
// ids), reading src and q at scrape time; either may be nil, and its
// metrics are then left out.
func New(models []string, src Source, q Queues) *Metrics {
	// Requests and waits run from milliseconds (a ready model) to minutes
	// (a long generation, or a load behind a swap).
	slow := prometheus.ExponentialBucketsRange(0.005, 600, 16)
	m := &Metrics{
		src:       src,
		q:         q,
		reg:       prometheus.NewRegistry(),
		endpoints: newLabelSet(maxEndpoints),
		causes:    newLabelSet(maxCauses, failCauses...),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_requests_total",
			Help: "Requests answered, by model, endpoint and HTTP status.",
		}, []string{"model", "endpoint", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hotswap_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, waits included.",
			Buckets: slow,
		}, []string{"model", "endpoint"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hotswap_wait_seconds",
			Help:    "Time requests waited before reaching a backend, by cause (queued or loading).",
			Buckets: slow,
		}, []string{"model", "cause"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_backend_starts_total",
			Help: "Backend starts decided.",
		}, []string{"model"}),
		startSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hotswap_backend_start_seconds",
			Help: "Time from a backend's process start to its being ready.",
			// A backend is never ready in under a tenth of a second, and a
			// large model from a slow disk can take minutes.
			Buckets: prometheus.ExponentialBucketsRange(0.1, 600, 14),
		}, []string{"model"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_backend_start_failures_total",
			Help: "Backend starts that failed, by cause.",
		}, []string{"model", "cause"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_evictions_total",
			Help: "Models that left memory, by reason (making_room, ttl, unload, other).",
		}, []string{"model", "reason"}),
		cooldown: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hotswap_cooldown_seconds",
			Help:    "Time evicted backends' memory took to show as free again.",
			Buckets: prometheus.ExponentialBucketsRange(0.01, 300, 14),
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_insufficient_memory_total",
			Help: "Starts refused because the model cannot fit in memory.",
		}, []string{"model"}),
		crashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_backend_crashes_total",
			Help: "Backends that exited on their own.",
		}, []string{"model"}),
		sleeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_backend_sleeps_total",
			Help: "Backends put to sleep rather than stopped.",
		}, []string{"model"}),
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_backend_wakes_total",
			Help: "Asleep backends woken (decided), rather than started; they are not in hotswap_backend_starts_total.",
		}, []string{"model"}),
		wakeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hotswap_backend_wake_seconds",
			Help:    "Time from a wake's call to the backend's being ready again.",
			Buckets: prometheus.ExponentialBucketsRange(0.01, 300, 14),
		}, []string{"model"}),
		sleepFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_backend_sleep_failures_total",
			Help: "Sleeps (then stopped instead) and wakes (then started afresh) that failed, by action.",
		}, []string{"model", "action"}),
		variantRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hotswap_variant_requests_total",
			Help: "Requests that named a variant, by the model whose backend serves it and the variant " +
				"(they count in hotswap_requests_total under that model too).",
		}, []string{"model", "variant"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.wait, m.starts, m.startSeconds,
		m.failures, m.evictions, m.cooldown, m.refusals, m.crashes, m.sleeps, m.wakes, m.wakeSeconds, m.sleepFailures,
		m.variantRequests, newLive(m))
	m.SetModels(models)
	return m
}

// SetModels replaces the configured models, after a reload. The series of
// models that left are deleted, rather than left at their last values for
// ever; those of models that stay keep counting.
func (m *Metrics) SetModels(models []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]bool, len(models))
	ids := make([]string, 0, len(models))
	for _, id := range models {
		// A model literally named "other" would be counted with the
		// models that are not configured; keep it one series, theirs.
		if id == "" || id == other || next[id] {
			continue
		}
		next[id] = true
		ids = append(ids, id)
	}
	for id := range m.models {
		if !next[id] {
			m.deleteModel(id)
		}
	}
	// Counters at zero, so that a dashboard shows a model that never
	// started, failed, crashed or was refused, and rate() sees the first
	// one. A model added by a reload gets them here too. (Histograms are
	// left to their first observation: a series per bucket for every
	// model would multiply what a scrape carries.)
	for _, id := range ids {
		m.starts.WithLabelValues(id)
		m.crashes.WithLabelValues(id)
		m.refusals.WithLabelValues(id)
		for _, c := range failCauses {
			m.failures.WithLabelValues(id, c)
		}
		for _, r := range evictReasons {
			m.evictions.WithLabelValues(id, r)
		}
	}
	m.models, m.ids = next, ids
}

func (m *Metrics) deleteModel(id string) {
	l := prometheus.Labels{"model": id}
	m.requests.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.wait.DeletePartialMatch(l)
	m.starts.DeletePartialMatch(l)
	m.startSeconds.DeletePartialMatch(l)
	m.failures.DeletePartialMatch(l)
	m.evictions.DeletePartialMatch(l)
	m.refusals.DeletePartialMatch(l)
	m.crashes.DeletePartialMatch(l)
	m.sleeps.DeletePartialMatch(l)
	m.wakes.DeletePartialMatch(l)
	m.wakeSeconds.DeletePartialMatch(l)
	m.sleepFailures.DeletePartialMatch(l)
	m.variantRequests.DeletePartialMatch(l)
}

// SetVariants replaces the configured variants (model id to variant
// ids), after a reload: the series of those that left are deleted, those
// that stay keep counting, and each declared one starts at zero.
func (m *Metrics) SetVariants(variants map[string][]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[[2]string]bool)
	for model, vs := range variants {
		for _, v := range vs {
			if model != "" && model != other && v != "" && v != other {
				next[[2]string{model, v}] = true
			}
		}
	}
	for pair := range m.variants {
		if !next[pair] {
			m.variantRequests.DeleteLabelValues(pair[0], pair[1])
		}
	}
	for pair := range next {
		m.variantRequests.WithLabelValues(pair[0], pair[1])
	}
	m.variants = next
}

// Variant counts a request that named variant, served by model's
// backend. A pair the configuration does not declare is counted as
// model "other", variant "other".
func (m *Metrics) Variant(model, variant string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.variants[[2]string{model, variant}] {
		model, variant = other, other
	}
	m.variantRequests.WithLabelValues(model, variant).Inc()
}

// modelLocked is model's label value. The caller holds mu.
func (m *Metrics) modelLocked(model string) string {
	if m.models[model] {
		return model
	}
	return other
}

// Request records a request answered with status after took.
func (m *Metrics) Request(model, endpoint string, status int, took time.Duration) {
	endpoint = m.endpoints.get(endpoint)
	code := other
	// Anything outside the HTTP range is a bug somewhere, and must not
	// make series of its own.
	if status >= 100 && status <= 599 {
		code = statusLabels[status-100]
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	model = m.modelLocked(model)
	m.requests.WithLabelValues(model, endpoint, code).Inc()
	m.duration.WithLabelValues(model, endpoint).Observe(took.Seconds())
}

// Waited records a request's wait before it reached a backend; cause is
// "queued" (behind other requests) or "loading" (for its model to start).
func (m *Metrics) Waited(model, cause string, took time.Duration) {
	if cause != "queued" && cause != "loading" {
		cause = other
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	m.wait.WithLabelValues(m.modelLocked(model), cause).Observe(took.Seconds())
}

// Listen counts what h publishes; a nil h publishes nothing.
func (m *Metrics) Listen(h *events.Hub) {
	if h == nil {
		return
	}
	h.Listen(m.event)
}

// event counts e. It runs under the hub's lock, on the publisher's
// goroutine (often under the swapper's lock too): it only counts.
func (m *Metrics) event(e events.Event) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	model := m.modelLocked(e.Model)
	switch e.Type {
	case events.Start:
		if e.Data["wake"] == true {
			m.wakes.WithLabelValues(model).Inc()
			break
		}
		m.starts.WithLabelValues(model).Inc()
	case events.Ready:
		s, ok := seconds(e.Data["seconds"])
		switch {
		case !ok:
		case e.Data["wake"] == true:
			m.wakeSeconds.WithLabelValues(model).Observe(s)
		default:
			m.startSeconds.WithLabelValues(model).Observe(s)
		}
	case events.Asleep:
		m.sleeps.WithLabelValues(model).Inc()
	case events.SleepFailed:
		if action, _ := e.Data["action"].(string); action == "sleep" || action == "wake" {
			m.sleepFailures.WithLabelValues(model, action).Inc()
		}
	case events.Fail:
		cause, _ := e.Data["cause"].(string)
		if cause == "" {
			cause = other
		}
		m.failures.WithLabelValues(model, m.causes.get(cause)).Inc()
	case events.Evict:
		reason, _ := e.Data["reason"].(string)
		m.evictions.WithLabelValues(model, evictReason(reason)).Inc()
	case events.Unload:
		m.evictions.WithLabelValues(model, "unload").Inc()
	case events.Cooldown:
		if s, ok := seconds(e.Data["seconds"]); ok {
			m.cooldown.Observe(s)
		}
	case events.Refuse:
		m.refusals.WithLabelValues(model).Inc()
	case events.Crash:
		m.crashes.WithLabelValues(model).Inc()
	}
}

// evictReason folds the swapper's words for why a model left into a label
// value.
func evictReason(reason string) string {
	switch reason {
	case "making room", "making_room":
		return "making_room"
	case "ttl", "keep_alive":
		// Idle past its ttl, or past what its last request's keep_alive
		// said instead.
		return "ttl"
	case "unload", "unloaded":
		return "unload"
	}
	return other
}

// seconds reads a duration from an event's data: float64 seconds, as the
// swapper publishes them, or a time.Duration.
func seconds(v any) (float64, bool) {
	var s float64
	switch v := v.(type) {
	case time.Duration:
		s = v.Seconds()
	case float64:
		s = v
	default:
		return 0, false
	}
	if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
		return 0, false
	}
	return s, true
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

// Registry is where the metrics are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// statusLabels are the status codes' label values, made once: Request
// runs for every request, and would otherwise format one each time.
var statusLabels = func() (l [500]string) {
	for i := range l {
		l[i] = strconv.Itoa(100 + i)
	}
	return l
}()

// labelSet bounds a free-form label: it keeps the first max values it is
// given, and calls the rest "other". A value seen before is looked up
// without a lock (every request asks); the set is copied when it grows,
// which it does at most max times.
type labelSet struct {
	seen atomic.Pointer[map[string]bool]
	mu   sync.Mutex // one writer at a time
	max  int
}

// newLabelSet keeps known, and the first values given beyond them up to
// max in all.
func newLabelSet(max int, known ...string) *labelSet {
	l := &labelSet{max: max}
	seen := map[string]bool{}
	for _, v := range known {
		seen[v] = true
	}
	l.seen.Store(&seen)
	return l
}

func (l *labelSet) get(v string) string {
	if (*l.seen.Load())[v] {
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := *l.seen.Load()
	switch {
	case seen[v]:
		return v
	case len(seen) >= l.max:
		return other
	}
	grown := make(map[string]bool, len(seen)+1)
	maps.Copy(grown, seen)
	grown[v] = true
	l.seen.Store(&grown)
	return v
}

// live reads the metrics that are a look at the present, rather than a
// count of the past, at scrape time: the values are the source's own, with
// nothing to keep in step.
type live struct {
	m *Metrics

	queued, inFlight            *prometheus.Desc
	memTotal, memFree, memAvail *prometheus.Desc
	memUsed, footprint          *prometheus.Desc
	loaded, state               *prometheus.Desc
}

func newLive(m *Metrics) *live {
	d := prometheus.NewDesc
	return &live{
		m:         m,
		queued:    d("hotswap_queue_depth", "Requests waiting in the model's queue.", []string{"model"}, nil),
		inFlight:  d("hotswap_in_flight", "Requests sent to the model's backend and not yet done, loading included.", []string{"model"}, nil),
		memTotal:  d("hotswap_memory_total_bytes", "The device's memory.", []string{"device"}, nil),
		memFree:   d("hotswap_memory_free_bytes", "The device's free memory, at the last look.", []string{"device"}, nil),
		memAvail:  d("hotswap_memory_available_bytes", "What a new start may take on the device: free, less the reserve and starts in progress.", []string{"device"}, nil),
		memUsed:   d("hotswap_memory_used_bytes", "What the model's backend was last measured to use on the device.", []string{"device", "model"}, nil),
		footprint: d("hotswap_footprint_bytes", "The most the model's backend has been measured to use (device ram or vram).", []string{"model", "device"}, nil),
		loaded:    d("hotswap_models_loaded", "Models ready to serve.", nil, nil),
		state:     d("hotswap_model_state", "1 for the model's current state.", []string{"model", "state"}, nil),
	}
}

func (l *live) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l.queued, l.inFlight, l.memTotal, l.memFree,
		l.memAvail, l.memUsed, l.footprint, l.loaded, l.state} {
		ch <- d
	}
}

func (l *live) Collect(ch chan<- prometheus.Metric) {
	// No lock of ours is held while the source takes its own: SetModels
	// replaces ids and models rather than changing them, so these stay
	// as they were.
	l.m.mu.RLock()
	ids := l.m.ids
	known := l.m.models
	l.m.mu.RUnlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	if q := l.m.q; q != nil {
		for _, id := range ids {
			s := q.Stats(id)
			if s == nil {
				continue
			}
			gauge(l.queued, float64(s.Queued.Load()), id)
			gauge(l.inFlight, float64(s.InFlight.Load()), id)
		}
	}

	src := l.m.src
	if src == nil {
		return
	}

	states := make(map[string]swapper.State, len(ids))
	loaded := 0
	for _, st := range src.Statuses() {
		states[st.Model] = st.State
		if st.State == swapper.Ready {
			loaded++
		}
	}
	gauge(l.loaded, float64(loaded))
	// A configured model the swapper does not know yet (a reload half
	// way) is not running: stopped, rather than a gap in the series.
	for _, id := range ids {
		gauge(l.state, 1, id, states[id].String())
	}

	for _, d := range src.Memory(false) {
		gauge(l.memTotal, float64(d.Total), d.Device)
		gauge(l.memFree, float64(d.Free), d.Device)
		gauge(l.memAvail, float64(d.Available), d.Device)
		// Models that are not configured share one series, so their
		// usage is added up rather than reported twice under one label.
		used := make(map[string]int64, len(d.Used))
		for id, b := range d.Used {
			if !known[id] {
				id = other
			}
			used[id] += b
		}
		for id, b := range used {
			gauge(l.memUsed, float64(b), d.Device, id)
		}
	}

	for _, id := range ids {
		fp := src.Footprint(id)
		if fp.RAM > 0 {
			gauge(l.footprint, float64(fp.RAM), id, "ram")
		}
		if fp.VRAM > 0 {
			gauge(l.footprint, float64(fp.VRAM), id, "vram")
		}
	}
}
