package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/metrics"
	"github.com/hotswap/hotswap/router"
)

func TestHistory(t *testing.T) {
	q := fakeQueues{"a": &router.Stats{}, "b": &router.Stats{}}
	m := metrics.New([]string{"a", "b"}, nil, q)
	t0 := time.Unix(1000, 0)
	m.Request("a", "chat/completions", 200, time.Millisecond)
	m.Request("b", "chat/completions", 503, time.Millisecond)
	m.Request("", "other", 404, 0)
	q["a"].Queued.Store(3)
	q["b"].Queued.Store(1)
	q["b"].InFlight.Store(2)
	m.Sample(t0)
	m.Request("a", "chat/completions", 200, time.Millisecond)
	q["a"].Queued.Store(0)
	m.Sample(t0.Add(5 * time.Second))
	h := m.History()
	want := []metrics.Point{
		{Time: t0, Requests: 3, Errors: 2, Queued: 4, InFlight: 2},
		{Time: t0.Add(5 * time.Second), Requests: 1, Errors: 0, Queued: 1, InFlight: 2},
	}
	if len(h.Points) != 2 || h.Points[0] != want[0] || h.Points[1] != want[1] {
		t.Errorf("history %+v, want %+v", h.Points, want)
	}
	// It keeps the latest HistoryLength, oldest first.
	for i := range metrics.HistoryLength + 5 {
		m.Sample(t0.Add(time.Duration(10+i) * time.Second))
	}
	h = m.History()
	if len(h.Points) != metrics.HistoryLength || !h.Points[0].Time.Equal(t0.Add(15*time.Second)) ||
		!h.Points[len(h.Points)-1].Time.After(h.Points[len(h.Points)-2].Time) {
		t.Errorf("kept %d points from %v", len(h.Points), h.Points[0].Time)
	}
	// A copy: the caller cannot change the metrics' own.
	h.Points[0].Requests = 99
	if m.History().Points[0].Requests == 99 {
		t.Error("History shares its points")
	}
}

func TestRecordSamplesUntilCancelled(t *testing.T) {
	m := metrics.New([]string{"a"}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Record(ctx, 10*time.Millisecond)
	}()
	mocktest.Eventually(5*time.Second, func() bool { return len(m.History().Points) >= 2 })
	cancel()
	<-done
	if h := m.History(); len(h.Points) < 2 || h.IntervalSeconds != 0.01 {
		t.Errorf("recorded %+v", h)
	}
}
