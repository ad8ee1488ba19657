package loadgen

import (
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms hold microseconds, from 1µs to an hour, to three significant
// digits: percentiles within 0.1%, in fixed memory however long the run.
const (
	histMin    = 1
	histMax    = int64(time.Hour / time.Microsecond)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

func recordDur(h *hdrhistogram.Histogram, d time.Duration) {
	us := max(int64(d/time.Microsecond), histMin)
	_ = h.RecordValue(min(us, histMax)) // clamped: cannot be out of range
}

// tally is what one model's requests came to on one target.
type tally struct {
	sent, answered, cancelled int
	errors                    map[errorKey]int
	latency, ttft             *hdrhistogram.Histogram
	gaps                      time.Duration
	nGaps                     int
	tokens                    int64
	byUsage, byChunks         int // answered streams counted each way
}

type errorKey struct {
	status int
	code   string
}

func newTally() *tally {
	return &tally{errors: map[errorKey]int{}, latency: newHist(), ttft: newHist()}
}

func (t *tally) add(o *outcome) {
	switch {
	case o.cancelled:
		t.cancelled++
		return
	case !o.ok():
		t.errors[errorKey{o.status, o.code}]++
		return
	}
	t.answered++
	recordDur(t.latency, o.latency)
	t.tokens += int64(o.tokens)
	if o.streamed {
		if o.ttft > 0 {
			recordDur(t.ttft, o.ttft)
		}
		t.gaps += o.gaps
		t.nGaps += o.nGaps
		if o.byUsage {
			t.byUsage++
		} else {
			t.byChunks++
		}
	}
}

func (t *tally) merge(u *tally) {
	t.sent += u.sent
	t.answered += u.answered
	t.cancelled += u.cancelled
	for k, n := range u.errors {
		t.errors[k] += n
	}
	t.latency.Merge(u.latency)
	t.ttft.Merge(u.ttft)
	t.gaps += u.gaps
	t.nGaps += u.nGaps
	t.tokens += u.tokens
	t.byUsage += u.byUsage
	t.byChunks += u.byChunks
}

func (t *tally) failed() int {
	n := 0
	for _, c := range t.errors {
		n += c
	}
	return n
}

// point is one finished request on the timeline, for the plots: when it
// was due and how long it took, in seconds from the run's start.
type point struct {
	at, latency float32
	model       uint16
	ok          bool
}

// Requests kept for the timeline: 32 MiB of points. A longer run's plots
// end where the points do, and the report says so.
const maxPoints = 2 << 20

// recorder gathers one target's outcomes as they come, from every sender.
type recorder struct {
	start time.Time

	mu        sync.Mutex
	models    []*tally
	points    []point
	truncated bool
	last      time.Time // when the last answer ended
	done      int       // requests finished, answered or not
	failed    int
}

func newRecorder(models int, start time.Time) *recorder {
	r := &recorder{start: start, last: start}
	for range models {
		r.models = append(r.models, newTally())
	}
	return r
}

func (r *recorder) sent(m int) {
	r.mu.Lock()
	r.models[m].sent++
	r.mu.Unlock()
}

func (r *recorder) add(m int, due time.Time, o *outcome) {
	end := due.Add(o.latency)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.models[m].add(o)
	if o.cancelled {
		return
	}
	r.done++
	if !o.ok() {
		r.failed++
	}
	if end.After(r.last) {
		r.last = end
	}
	if len(r.points) < maxPoints {
		r.points = append(r.points, point{
			at: float32(due.Sub(r.start).Seconds()), latency: float32(o.latency.Seconds()),
			model: uint16(m), ok: o.ok(),
		})
	} else {
		r.truncated = true
	}
}

// progress is what the progress line shows.
func (r *recorder) progress() (done, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done, r.failed
}
