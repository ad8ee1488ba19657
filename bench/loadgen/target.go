package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"
)

// listed is a model as a target's /v1/models lists it. kind, aliases and
// owned_by "hotswap" are hotswap's; other servers list ids only.
type listed struct {
	ID      string   `json:"id"`
	OwnedBy string   `json:"owned_by"`
	Kind    string   `json:"kind"`
	Aliases []string `json:"aliases"`
}

// discovery is what a target said about itself before the run.
type discovery struct {
	models  []listed // nil when it has no /v1/models
	hotswap bool
}

// find is the listed model called name, by id or alias.
func (d *discovery) find(name string) (listed, bool) {
	for _, m := range d.models {
		if m.ID == name {
			return m, true
		}
	}
	for _, m := range d.models {
		for _, a := range m.Aliases {
			if a == name {
				return m, true
			}
		}
	}
	return listed{}, false
}

// How long the tool waits for a target to answer its first question: a
// target that is down must be said to be down at once, not after a hang.
const discoverTimeout = 5 * time.Second

// discover asks a target for its models, which also tells whether it is
// up, whether the key is right, and whether it is hotswap.
func discover(ctx context.Context, hc *http.Client, t Target, key string) (*discovery, error) {
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	body, status, err := get(ctx, hc, t.URL+"/v1/models", key)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("target %s (%s) is down: nothing listens there", t.Label, t.URL)
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("target %s (%s) did not answer GET /v1/models within %v", t.Label, t.URL, discoverTimeout)
	case err != nil:
		return nil, fmt.Errorf("target %s (%s) cannot be reached: %w", t.Label, t.URL, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return nil, fmt.Errorf("target %s (%s) refused the key (%d): give -api-key", t.Label, t.URL, status)
	case status == http.StatusNotFound:
		return &discovery{}, nil // a backend without a model list
	case status != http.StatusOK:
		return nil, fmt.Errorf("target %s (%s): GET /v1/models answered %d: %s", t.Label, t.URL, status, clip(body))
	}
	var list struct {
		Data []listed `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("target %s (%s): GET /v1/models is not an OpenAI model list: %w", t.Label, t.URL, err)
	}
	d := &discovery{models: list.Data}
	for _, m := range list.Data {
		d.hotswap = d.hotswap || m.OwnedBy == "hotswap"
	}
	if d.models == nil {
		d.models = []listed{}
	}
	return d, nil
}

func get(ctx context.Context, hc *http.Client, url, key string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return b, resp.StatusCode, err
}

func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// counters are hotswap's counters, by model, read from /metrics at a
// target's start and end: the run's share is the difference.
type counters struct {
	starts    map[string]float64
	evictions map[string]float64
	failures  map[string]float64
	crashes   map[string]float64
	waitSum   map[[2]string]float64 // by model and cause (loading, queued)
	waitCount map[[2]string]float64
}

func scrapeCounters(ctx context.Context, hc *http.Client, t Target, key string) (*counters, error) {
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	body, status, err := get(ctx, hc, t.URL+"/metrics", key)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics answered %d (give -admin-key)", status)
	}
	p := expfmt.NewTextParser(promodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	c := &counters{
		starts: sumBy(fams["hotswap_backend_starts_total"]), evictions: sumBy(fams["hotswap_evictions_total"]),
		failures: sumBy(fams["hotswap_backend_start_failures_total"]), crashes: sumBy(fams["hotswap_backend_crashes_total"]),
		waitSum: map[[2]string]float64{}, waitCount: map[[2]string]float64{},
	}
	if f := fams["hotswap_wait_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			k := [2]string{label(m, "model"), label(m, "cause")}
			c.waitSum[k] += m.GetHistogram().GetSampleSum()
			c.waitCount[k] += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return c, nil
}

// sumBy adds a counter's series up by model.
func sumBy(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		out[label(m, "model")] += m.GetCounter().GetValue()
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Mark is something hotswap did during a run, from its event stream: a
// start (a swap), an eviction, a refusal, a crash, a failed start.
type Mark struct {
	At     float64 `json:"at_s"` // seconds from the target's start
	Type   string  `json:"type"`
	Model  string  `json:"model"`
	Reason string  `json:"reason,omitempty"`
}

// Marks kept per target: a run that swaps more than this has its plots
// marked up to here.
const maxMarks = 10000

// watcher follows hotswap's /admin/events during a run.
type watcher struct {
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	marks []Mark
	err   error
}

// watch opens the event stream and returns once it is open (or failed),
// so that no event of the run is missed.
func watch(ctx context.Context, hc *http.Client, t Target, key string, start time.Time) *watcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{start: start, cancel: cancel, done: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL+"/admin/events", nil)
	if err == nil && key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	var resp *http.Response
	if err == nil {
		resp, err = hc.Do(req)
	}
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = fmt.Errorf("GET /admin/events answered %d (give -admin-key)", resp.StatusCode)
	}
	if err != nil {
		w.err = err
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		defer resp.Body.Close()
		w.read(resp.Body)
	}()
	return w
}

func (w *watcher) read(body io.Reader) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok {
			continue
		}
		var e struct {
			Type  string         `json:"type"`
			Model string         `json:"model"`
			Data  map[string]any `json:"data"`
		}
		if json.Unmarshal(data, &e) != nil {
			continue
		}
		switch e.Type {
		case "start", "evict", "refuse", "crash", "fail":
		default:
			continue
		}
		reason, _ := e.Data["reason"].(string)
		if reason == "" {
			reason, _ = e.Data["cause"].(string)
		}
		w.mu.Lock()
		if len(w.marks) < maxMarks {
			w.marks = append(w.marks, Mark{At: time.Since(w.start).Seconds(), Type: e.Type, Model: e.Model, Reason: reason})
		}
		w.mu.Unlock()
	}
}

// stop ends the stream and returns what it saw.
func (w *watcher) stop() ([]Mark, error) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.marks, w.err
}
