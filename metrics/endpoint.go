package metrics

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/swapper"
)

// GET /metrics/endpoint serves what an endpoint picker needs to choose
// among several hotswap hosts: llm-d's EPP (the Gateway API Inference
// Extension's endpoint picker) scrapes it and sends each request to the
// host that has its model loaded, or room for it. The picker treats
// models as it treats vLLM's LoRA adapters, so the loaded models go out in
// the LoRA-info form its lora-affinity scorer reads, and the totals in the
// shape its queue and KV-cache scorers read.
//
// It is a registry of its own, apart from /metrics: its label values are
// lists of model names, a new series for every set of loaded models, which
// /metrics (whose label sets stay bounded) must not carry. Each scrape
// carries exactly one series of the LoRA-info gauge, so nothing piles up.

// Names of the endpoint picker's metrics. An EPP engine config for hotswap
// (examples/llm-d/) names them.
const (
	EndpointLoRAInfo     = "hotswap_endpoint_lora_requests_info"
	EndpointWaiting      = "hotswap_endpoint_requests_waiting"
	EndpointRunning      = "hotswap_endpoint_requests_running"
	EndpointMemoryUsage  = "hotswap_endpoint_memory_usage_ratio"
	EndpointLeaving      = "hotswap_endpoint_leaving"
	labelRunningAdapters = "running_lora_adapters"
	labelWaitingAdapters = "waiting_lora_adapters"
	labelMaxAdapters     = "max_lora"
)

// Planner says what a request for a model would do now (the swapper's dry
// run): the endpoint's figures ask it whether a model would start without
// evicting anything.
type Planner interface {
	DryRun(model string, o swapper.DryRunOptions) (swapper.DryRun, error)
}

// EndpointOptions configure an Endpoint.
type EndpointOptions struct {
	// Config gives the models, in order, and the names clients use for
	// them (aliases, variants); SetConfig replaces it after a reload.
	Config *config.Config
	// Source, Queues and Planner are read at scrape time; a nil Source
	// or Queues leaves its part out, a nil Planner never claims room.
	Source  Source
	Queues  Queues
	Planner Planner
	// Clock dates the LoRA-info series; nil is the real clock.
	Clock clock.Clock
}

// Endpoint is the figures of GET /metrics/endpoint. It is safe for
// concurrent use.
type Endpoint struct {
	src     Source
	q       Queues
	planner Planner
	clock   clock.Clock
	reg     *prometheus.Registry

	models  atomic.Pointer[[]endpointNames]
	leaving atomic.Bool

	// mu guards the last LoRA-info labels and when they changed: the
	// series' value is that time, which the picker compares across series.
	mu      sync.Mutex
	lastKey string
	since   time.Time
}

// endpointNames is a configured model and every name that reaches it.
type endpointNames struct {
	id    string
	names []string
}

// NewEndpoint returns the figures of GET /metrics/endpoint.
func NewEndpoint(o EndpointOptions) *Endpoint {
	e := &Endpoint{src: o.Source, q: o.Queues, planner: o.Planner, clock: clock.Or(o.Clock), reg: prometheus.NewRegistry()}
	e.SetConfig(o.Config)
	e.reg.MustRegister(endpointCollector{e})
	return e
}

// SetConfig takes the models and their names from cfg, after a reload.
func (e *Endpoint) SetConfig(cfg *config.Config) {
	var ms []endpointNames
	if cfg != nil {
		for _, id := range cfg.ModelIDs {
			if m := cfg.Models[id]; m != nil {
				ms = append(ms, endpointNames{id: id, names: ModelNames(m)})
			}
		}
	}
	e.models.Store(&ms)
}

// ModelNames lists every name a request may give for m, as the picker
// compares them (literally): its id, its aliases, and each variant's id
// and aliases.
func ModelNames(m *config.Model) []string {
	names := append([]string{m.ID}, m.Aliases...)
	for _, v := range m.Variants {
		names = append(names, v.ID)
		names = append(names, v.Aliases...)
	}
	return names
}

// Leave says from now on that this host is leaving (hotswap was told to
// stop and serves on for a while, see endpoint_picker.leave): the picker
// filters it out, and it claims no room.
func (e *Endpoint) Leave() { e.leaving.Store(true) }

// Handler serves the figures in the Prometheus text format.
func (e *Endpoint) Handler() fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}))
}

// EndpointModel is one configured model as the picker's figures see it.
type EndpointModel struct {
	ID string
	// Names are the names that reach it (see ModelNames).
	Names []string
	State swapper.State
	// Queued is how many requests wait in its queue.
	Queued int64
	// Fits says it would start now without evicting anything. It is only
	// asked of models that are neither loaded nor on their way.
	Fits bool
}

// LoRAInfo is the LoRA-info series: the names of the loaded models, of
// those on their way, and how many the host can have at once.
type LoRAInfo struct {
	Running, Waiting []string
	Max              int
}

// Where a model is, for the picker.
const (
	elsewhere = iota // neither loaded nor on its way
	running
	waiting
)

// endpointPlace says where m is for the picker. Ready models run. A model
// starting, or with requests queued while it is not loaded (draining,
// stopping, stopped), is waiting; so is an asleep one (or one going to
// sleep): its process holds it, and a wake is cheaper than a start, so the
// picker should rank its host above one where it is not at all, and below
// one where it runs. Asleep models are never counted as running: a request
// for one waits for its wake.
func endpointPlace(m EndpointModel) int {
	switch {
	case m.State == swapper.Ready:
		return running
	case m.State == swapper.Starting, m.State == swapper.Asleep, m.State == swapper.Sleeping, m.Queued > 0:
		return waiting
	}
	return elsewhere
}

// ComputeLoRAInfo is the LoRA-info series for models. max_lora is the
// number of names running and waiting, plus one when a model that is
// neither would start now without evicting anything (and the host is not
// leaving): the lora-affinity scorer gives a host 1.0 where the model
// runs, 0.8 where running and waiting names are fewer than max_lora (room
// for one more), 0.6 where the model is waiting, and 0 otherwise. It
// counts names, not models, since it compares names: max_lora counts them
// alike.
func ComputeLoRAInfo(models []EndpointModel, leaving bool) LoRAInfo {
	info := LoRAInfo{Running: []string{}, Waiting: []string{}}
	room := false
	for _, m := range models {
		switch endpointPlace(m) {
		case running:
			info.Running = append(info.Running, m.Names...)
		case waiting:
			info.Waiting = append(info.Waiting, m.Names...)
		default:
			room = room || m.Fits
		}
	}
	info.Max = len(info.Running) + len(info.Waiting)
	if room && !leaving {
		info.Max++
	}
	return info
}

// MemoryUsage is the memory in use as a fraction of what hotswap may use,
// on the fullest device: the budget is limit_ram for RAM when set, else
// the device's total less its reserve, and what is in use is the budget
// less what a new start may take (so starts in progress count, and, for
// RAM without a limit, so do other programs). 0 with no devices; 1 at most.
func MemoryUsage(devs []swapper.DeviceReport) float64 {
	usage := 0.0
	for _, d := range devs {
		budget := d.Total - d.Reserve
		if d.Device == "ram" && d.Limit > 0 {
			budget = d.Limit
		}
		if budget <= 0 {
			continue
		}
		u := float64(budget-d.Available) / float64(budget)
		usage = max(usage, min(1, max(0, u)))
	}
	return usage
}

// snapshot reads what the figures are made of. It takes no lock of its
// own: the swapper and router take theirs, one call at a time.
func (e *Endpoint) snapshot() (models []EndpointModel, waitingReqs, runningReqs int64) {
	names := *e.models.Load()
	states := make(map[string]swapper.State, len(names))
	if e.src != nil {
		for _, st := range e.src.Statuses() {
			states[st.Model] = st.State
			runningReqs += int64(st.InFlight)
		}
	}
	var dispatched int64
	models = make([]EndpointModel, 0, len(names))
	for _, n := range names {
		m := EndpointModel{ID: n.id, Names: n.names, State: states[n.id]}
		if e.q != nil {
			if s := e.q.Stats(n.id); s != nil {
				m.Queued = s.Queued.Load()
				dispatched += m.Queued + s.InFlight.Load()
			}
		}
		models = append(models, m)
	}
	// The router's in-flight count includes requests waiting for their
	// model to load; those on a backend are the swapper's.
	waitingReqs = max(0, dispatched-runningReqs)
	if e.planner == nil {
		return models, waitingReqs, runningReqs
	}
	// One model that fits is enough to claim room; the dry run reads the
	// swapper's state under its lock and changes nothing.
	for i := range models {
		m := &models[i]
		if endpointPlace(*m) != elsewhere {
			continue
		}
		d, err := e.planner.DryRun(m.ID, swapper.DryRunOptions{})
		if err == nil && d.Action == swapper.PlanStart && len(d.Evict) == 0 {
			m.Fits = true
			break
		}
	}
	return models, waitingReqs, runningReqs
}

// dated returns when info last changed: now if it differs from the last
// scrape's.
func (e *Endpoint) dated(info LoRAInfo) time.Time {
	key := strings.Join(info.Running, ",") + "\x00" + strings.Join(info.Waiting, ",") + "\x00" + strconv.Itoa(info.Max)
	e.mu.Lock()
	defer e.mu.Unlock()
	if key != e.lastKey || e.since.IsZero() {
		e.lastKey, e.since = key, e.clock.Now()
	}
	return e.since
}

// endpointCollector reads the figures at scrape time.
type endpointCollector struct{ e *Endpoint }

var (
	descLoRAInfo = prometheus.NewDesc(EndpointLoRAInfo,
		"The models this host has loaded (running_lora_adapters: ids, aliases and variants), those on their way "+
			"(waiting_lora_adapters: starting, asleep, or with requests queued) and how many it can hold now (max_lora: "+
			"running and waiting names, plus one when another model fits without evicting anything), in vLLM's LoRA-info "+
			"form; the value is the unix time of the last change.",
		[]string{labelRunningAdapters, labelWaitingAdapters, labelMaxAdapters}, nil)
	descWaiting = prometheus.NewDesc(EndpointWaiting,
		"Requests waiting: queued, or waiting for their model to load.", nil, nil)
	descRunning = prometheus.NewDesc(EndpointRunning,
		"Requests on a backend.", nil, nil)
	descMemory = prometheus.NewDesc(EndpointMemoryUsage,
		"Memory in use as a fraction of what hotswap may use (limit_ram, or total less the reserve), on the fullest device.", nil, nil)
	descLeaving = prometheus.NewDesc(EndpointLeaving,
		"1 while hotswap is leaving (told to stop, serving on for endpoint_picker.leave), else 0.", nil, nil)
)

func (c endpointCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLoRAInfo, descWaiting, descRunning, descMemory, descLeaving} {
		ch <- d
	}
}

func (c endpointCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	models, waitingReqs, runningReqs := e.snapshot()
	leaving := e.leaving.Load()
	info := ComputeLoRAInfo(models, leaving)
	at := e.dated(info)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descLoRAInfo, float64(at.UnixNano())/1e9,
		strings.Join(info.Running, ","), strings.Join(info.Waiting, ","), strconv.Itoa(info.Max))
	gauge(descWaiting, float64(waitingReqs))
	gauge(descRunning, float64(runningReqs))
	var devs []swapper.DeviceReport
	if e.src != nil {
		devs = e.src.Memory(false)
	}
	gauge(descMemory, MemoryUsage(devs))
	l := 0.0
	if leaving {
		l = 1
	}
	gauge(descLeaving, l)
}
