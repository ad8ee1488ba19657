package metrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The status page plots the last minutes of traffic without a Prometheus
// server in between: the metrics keep a short series of their own.

// Point is one interval of the history.
type Point struct {
	// Time is the interval's end.
	Time time.Time `json:"time"`
	// Requests were answered during the interval, Errors of them with a
	// status of 400 or more.
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
	// Queued and InFlight are the requests waiting and at backends, over
	// all models, at Time.
	Queued   int64 `json:"queued"`
	InFlight int64 `json:"in_flight"`
}

// History is the series, oldest first.
type History struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	Points          []Point `json:"points"`
}

// HistoryLength is how many points are kept: 15 minutes at the
// interval cmd/hotswap samples at (5 s).
const HistoryLength = 180

// history is the series being kept.
type history struct {
	mu       sync.Mutex
	interval time.Duration
	points   []Point // at most HistoryLength, oldest first
	// answered and failed are the totals at the last sample.
	answered, failed uint64
}

// Sample ends an interval at now: the requests answered since the last
// sample, and the queues as they are.
func (m *Metrics) Sample(now time.Time) {
	answered, failed := m.requestTotals()
	p := Point{Time: now}
	if q := m.q; q != nil {
		m.mu.RLock()
		ids := m.ids
		m.mu.RUnlock()
		for _, id := range ids {
			if s := q.Stats(id); s != nil {
				p.Queued += s.Queued.Load()
				p.InFlight += s.InFlight.Load()
			}
		}
	}
	h := &m.history
	h.mu.Lock()
	defer h.mu.Unlock()
	p.Requests, p.Errors = answered-h.answered, failed-h.failed
	h.answered, h.failed = answered, failed
	if len(h.points) == HistoryLength {
		copy(h.points, h.points[1:])
		h.points = h.points[:HistoryLength-1]
	}
	h.points = append(h.points, p)
}

// History returns the series kept.
func (m *Metrics) History() History {
	h := &m.history
	h.mu.Lock()
	defer h.mu.Unlock()
	return History{IntervalSeconds: h.interval.Seconds(), Points: append([]Point{}, h.points...)}
}

// requestTotals adds up hotswap_requests_total: every request answered,
// and those with a status of 400 or more (or outside HTTP's range). It is
// read from the counter the requests already count in, every interval,
// so that the history costs the request path nothing.
func (m *Metrics) requestTotals() (answered, failed uint64) {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		m.requests.Collect(ch)
		close(ch)
	}()
	for pm := range ch {
		var d dto.Metric
		if pm.Write(&d) != nil {
			continue
		}
		n := uint64(d.GetCounter().GetValue())
		answered += n
		for _, l := range d.GetLabel() {
			if l.GetName() == "status" && !isBelow400(l.GetValue()) {
				failed += n
			}
		}
	}
	return answered, failed
}

// isBelow400 reports whether a status label is a status under 400.
func isBelow400(label string) bool {
	code, err := strconv.Atoi(label)
	return err == nil && code < 400
}

// Record samples every interval until ctx ends.
func (m *Metrics) Record(ctx context.Context, every time.Duration) {
	m.history.mu.Lock()
	m.history.interval = every
	m.history.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			m.Sample(now)
		case <-ctx.Done():
			return
		}
	}
}
