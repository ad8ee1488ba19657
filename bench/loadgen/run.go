package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotswap/hotswap/clock"
)

// maxOpen bounds an open loop's requests in flight: arrivals past it wait
// for a slot (and their latency, counted from when they were due, shows
// the wait), so that a target that stopped answering cannot make the tool
// open connections without end.
const maxOpen = 4096

// Run sends o's workload to each target in turn and reports what came
// back. It returns an error, before sending any work, when a target is
// down or the workload has nothing to send. When ctx ends (Ctrl-C) it
// stops at once and reports what ran, marked Interrupted. progress, if
// not nil, is called with each target's recorder while it runs.
func Run(ctx context.Context, o Options, progress func(*Live)) (*Report, error) {
	meta := &http.Client{Timeout: discoverTimeout}
	finds := make([]*discovery, len(o.Targets))
	for i, t := range o.Targets {
		d, err := discover(ctx, meta, t, o.APIKey)
		if err != nil {
			return nil, err
		}
		finds[i] = d
	}
	models, notes := resolve(&o, finds)
	if len(models) == 0 {
		return nil, fmt.Errorf("nothing to send: %v", notes)
	}
	w := newWorkload(models, o.Seed, o.Mix)
	rep := &Report{Started: time.Now(), Notes: notes, Workload: workloadReport(&o, models)}
	if o.Users > 0 && !o.Mix {
		for i, u := range countUsers(w.forUsers(o.Users), len(models)) {
			if u == 0 {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s has no user at -users %d and its weight: give more users, or -mix", models[i].Model, o.Users))
			}
		}
	}
	for i, t := range o.Targets {
		if ctx.Err() != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("target %s was not run: interrupted", t.Label))
			continue
		}
		tr := runTarget(ctx, &o, w, t, finds[i], i, progress, &rep.Notes)
		rep.Targets = append(rep.Targets, tr)
	}
	rep.Interrupted = ctx.Err() != nil
	return rep, nil
}

// resolve decides what each model of the workload is sent, from what the
// targets list: embeddings for embedding models, chat completions for the
// rest, and nothing for kinds that take no text (speech, images).
func resolve(o *Options, finds []*discovery) ([]model, []string) {
	var models []model
	var notes []string
	for _, wm := range o.Models {
		kind, seen := "", false
		for i, d := range finds {
			if m, ok := d.find(o.name(o.Targets[i].Label, wm.Model)); ok {
				kind, seen = m.Kind, true
				if kind != "" {
					break
				}
			}
		}
		switch kind {
		case "embedding":
			models = append(models, model{Weighted: wm, kind: kindEmbedding})
		case "stt", "tts", "image":
			notes = append(notes, fmt.Sprintf("%s skipped: its kind (%s) takes no text request", wm.Model, kind))
		default:
			if !seen {
				notes = append(notes, fmt.Sprintf("%s is not in any target's /v1/models: sent chat completions", wm.Model))
			}
			models = append(models, model{Weighted: wm, kind: kindChat})
		}
	}
	return models, notes
}

func countUsers(users []int, models int) []int {
	n := make([]int, models)
	for _, m := range users {
		n[m]++
	}
	return n
}

func workloadReport(o *Options, models []model) WorkloadReport {
	wr := WorkloadReport{Loop: "closed", Users: o.Users, Rate: o.Rate, Mix: o.Mix, Requests: o.Requests,
		DurationS: o.Duration.Seconds(), Stream: o.Stream, MaxTokens: o.MaxTokens, Seed: o.Seed,
		ThinkMs: float64(o.Think) / float64(time.Millisecond)}
	if o.Rate > 0 {
		wr.Loop = "open"
	}
	for _, m := range models {
		wr.Models = append(wr.Models, WorkloadModel{Model: m.Model, Weight: m.Weight, Kind: m.kind})
	}
	return wr
}

// Live is a target's run as it goes, for the progress line.
type Live struct {
	Target   Target
	Index, N int // which target of how many
	Start    time.Time
	Requests int           // the run's bound in requests, or
	Duration time.Duration // in time
	Finished bool          // the last call for this target
	rec      *recorder
}

// Done is how many requests have finished, and how many of those failed.
func (l *Live) Done() (done, failed int) { return l.rec.progress() }

func runTarget(ctx context.Context, o *Options, w *workload, t Target, d *discovery, index int,
	progress func(*Live), notes *[]string) TargetReport {
	meta := &http.Client{Timeout: discoverTimeout}
	var before *counters
	var events *watcher
	if d.hotswap {
		var err error
		if before, err = scrapeCounters(ctx, meta, t, o.AdminKey); err != nil {
			*notes = append(*notes, fmt.Sprintf("target %s is hotswap, but its swap figures are missing: %v", t.Label, err))
		}
	}
	conns := o.Users
	if o.Rate > 0 {
		conns = 256
	}
	c := newSender(t, o, w.models, conns)
	defer c.close()

	start := time.Now()
	if before != nil {
		events = watch(ctx, &http.Client{}, t, o.AdminKey, start)
	}
	rec := newRecorder(len(w.models), start)
	live := &Live{Target: t, Index: index, N: len(o.Targets), Start: start, Requests: o.Requests, Duration: o.Duration, rec: rec}
	stopProgress := func() {}
	if progress != nil {
		stopProgress = every(250*time.Millisecond, func() { progress(live) })
	}
	// Sending stops at the deadline; what is in flight then may finish,
	// within -timeout. Ctrl-C (ctx) stops both at once.
	sendCtx := ctx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		sendCtx, cancel = context.WithDeadline(ctx, start.Add(o.Duration))
		defer cancel()
	}
	if o.Rate > 0 {
		openLoop(ctx, sendCtx, o, w, c, rec)
	} else {
		closedLoop(ctx, sendCtx, o, w, c, rec)
	}
	stopProgress()
	if progress != nil {
		live.Finished = true
		progress(live)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	elapsed := rec.last.Sub(start).Seconds()
	tr := TargetReport{Label: t.Label, URL: t.URL, ElapsedS: round3(elapsed)}
	total := newTally()
	for i, m := range w.models {
		total.merge(rec.models[i])
		mf := ModelFigures{Model: m.Model, Figures: rec.models[i].figures(elapsed)}
		if n := o.name(t.Label, m.Model); n != m.Model {
			mf.Name = n
		}
		tr.Models = append(tr.Models, mf)
	}
	tr.Total = total.figures(elapsed)
	tr.Timeline = timeline(rec, w.models, elapsed)
	if before != nil {
		// Ctrl-C has ended ctx: the figures are still wanted.
		after, err := scrapeCounters(context.WithoutCancel(ctx), meta, t, o.AdminKey)
		marks, werr := events.stop()
		if werr != nil {
			*notes = append(*notes, fmt.Sprintf("target %s: no swap marks on the plots: %v", t.Label, werr))
		}
		if err != nil {
			*notes = append(*notes, fmt.Sprintf("target %s: swap figures after the run are missing: %v", t.Label, err))
		} else {
			tr.Hotswap = hotswapFigures(o, w, t, d, before, after, marks)
		}
	}
	return tr
}

// closedLoop runs o.Users users, each sending its next request when its
// last is answered (and -think has passed).
func closedLoop(ctx, sendCtx context.Context, o *Options, w *workload, c *sender, rec *recorder) {
	var users []int
	if !o.Mix {
		users = w.forUsers(o.Users)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for u := range o.Users {
		wg.Go(func() {
			for sendCtx.Err() == nil {
				k := int(next.Add(1) - 1)
				if o.Requests > 0 && k >= o.Requests {
					return
				}
				m := w.forRequest(k)
				if users != nil {
					m = users[u]
				}
				rec.sent(m)
				due := time.Now()
				out := c.send(ctx, m, due, o.Timeout)
				rec.add(m, due, &out)
				clock.Sleep(clock.Real{}, o.Think, sendCtx.Done())
			}
		})
	}
	wg.Wait()
}

// openLoop sends requests as they arrive, a Poisson process of o.Rate a
// second, whether or not earlier ones were answered.
func openLoop(ctx, sendCtx context.Context, o *Options, w *workload, c *sender, rec *recorder) {
	gap := w.arrivals(o.Rate)
	slots := make(chan struct{}, maxOpen)
	var wg sync.WaitGroup
	defer wg.Wait()
	due := rec.start
	for k := 0; o.Requests == 0 || k < o.Requests; k++ {
		due = due.Add(time.Duration(gap() * float64(time.Second)))
		// Past the deadline (or Ctrl-C), nothing more is sent, even by a
		// loop that is behind.
		if !clock.Sleep(clock.Real{}, time.Until(due), sendCtx.Done()) || sendCtx.Err() != nil {
			return
		}
		select {
		case slots <- struct{}{}:
		case <-sendCtx.Done():
			return
		}
		m, at := w.forRequest(k), due
		rec.sent(m)
		wg.Go(func() {
			defer func() { <-slots }()
			out := c.send(ctx, m, at, o.Timeout)
			rec.add(m, at, &out)
		})
	}
}

// every calls f every d until the returned stop is called.
func every(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				f()
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// hotswapFigures are the run's share of hotswap's counters, for the
// workload's models (as hotswap calls them: an alias counts as its model).
func hotswapFigures(o *Options, w *workload, t Target, d *discovery, before, after *counters, marks []Mark) *HotswapFigures {
	h := &HotswapFigures{Marks: marks}
	if h.Marks == nil {
		h.Marks = []Mark{}
	}
	// Starts and evictions of every model count in the total: a swap may
	// evict a model the workload does not ask for.
	for id, n := range after.starts {
		h.Starts += int(n - before.starts[id])
	}
	for id, n := range after.evictions {
		h.Evictions += int(n - before.evictions[id])
	}
	var ids []string
	for _, m := range w.models {
		id := o.name(t.Label, m.Model)
		if l, ok := d.find(id); ok {
			id = l.ID
		}
		mf := HotswapModelFigure{Model: m.Model}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
			mf.Starts = int(after.starts[id] - before.starts[id])
			mf.Evictions = int(after.evictions[id] - before.evictions[id])
			mf.WaitLoadingS = round3(after.waitSum[[2]string{id, "loading"}] - before.waitSum[[2]string{id, "loading"}])
			mf.WaitQueuedS = round3(after.waitSum[[2]string{id, "queued"}] - before.waitSum[[2]string{id, "queued"}])
			h.Failures += int(after.failures[id] - before.failures[id])
			h.Crashes += int(after.crashes[id] - before.crashes[id])
		}
		h.WaitLoadingS = round3(h.WaitLoadingS + mf.WaitLoadingS)
		h.WaitQueuedS = round3(h.WaitQueuedS + mf.WaitQueuedS)
		h.Models = append(h.Models, mf)
	}
	return h
}
