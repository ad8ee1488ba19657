package swapper

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hotswap/hotswap/config"
)

// A dry run answers what a request for a model would do now, from the
// same snapshot and the same planner (choosePlan) a real start uses, and
// changes nothing: no reservation, no start, no eviction, no event.

// What a dry run says a request would do.
const (
	// PlanReady: the model is loaded; the request is served at once.
	PlanReady = "ready"
	// PlanStart: the model would be started at once (evicting Evict).
	PlanStart = "start"
	// PlanWait: the request would wait for WaitFor first.
	PlanWait = "wait"
	// PlanRefuse: the request would be refused (Refused says why).
	PlanRefuse = "refuse"
)

// DryRun is the answer of GET /admin/plan?model=X.
type DryRun struct {
	Model string `json:"model"`
	// Action is ready, start, wait or refuse.
	Action string `json:"action"`
	// State is the model's state now.
	State string `json:"state"`
	// Device is where it would go ("ram", "gpu0", ...), or where it is.
	Device string `json:"device,omitempty"`
	// Need is what planning counts for it (declared, raised to what was
	// learned).
	Need config.Need `json:"need"`
	// Wake says it is asleep (or going to sleep): it would be woken
	// rather than started, in its learned wake time.
	Wake bool `json:"wake,omitempty"`
	// WaitFor is what the request would wait for before the start.
	WaitFor []DryRunWait `json:"wait_for,omitempty"`
	// Evict are the models it would stop to make room, and why the
	// planner chose them; Why is the planner's order of preference.
	Evict []DryRunEviction `json:"evict,omitempty"`
	Why   string           `json:"why,omitempty"`
	// ExpectedWait is the expected time until the model is ready: the
	// waits that can be estimated plus its learned start time (StartTook;
	// zero before its first start). ExpectedWaitKnown is false when part
	// of it cannot be estimated (a drain, a busy model's max_wait).
	ExpectedWait      time.Duration `json:"-"`
	ExpectedWaitS     float64       `json:"expected_wait_s"`
	ExpectedWaitKnown bool          `json:"expected_wait_known"`
	// Refused says why a request would be refused.
	Refused *DryRunRefusal `json:"refused,omitempty"`
}

// DryRunWait is one thing a request would wait for.
type DryRunWait struct {
	// Kind: drain (a model leaving, its requests finishing), stop (a
	// model's process stopping), sleep (a model being put to sleep), start (a start in progress, the model's
	// own or one holding memory), cooldown (memory of a stopped backend
	// not yet seen free), busy (a busy model in the way: it is evicted once
	// the request has waited max_wait, or it goes idle).
	Kind  string `json:"kind"`
	Model string `json:"model,omitempty"`
	// InFlight is a draining model's requests still running.
	InFlight int `json:"in_flight,omitempty"`
	// ExpectedS is the time this wait is expected to take, where known
	// (a start's learned time less what has passed); AtMostS bounds it
	// where a timeout does (a drain's drain timeout, max_wait).
	ExpectedS *float64 `json:"expected_s,omitempty"`
	AtMostS   *float64 `json:"at_most_s,omitempty"`
}

// DryRunEviction is one model a start would stop or put to sleep.
type DryRunEviction struct {
	Model string `json:"model"`
	// Busy: it has work, and would be drained first.
	Busy bool `json:"busy"`
	// Sleep: it would be put to sleep rather than stopped; Asleep: it
	// sleeps already, and would be stopped.
	Sleep  bool `json:"sleep,omitempty"`
	Asleep bool `json:"asleep,omitempty"`
	// RAM and VRAM are what stopping it, or putting it to sleep, frees
	// (RAM can be negative for a sleep that moves weights to RAM).
	RAM  int64 `json:"ram"`
	VRAM int64 `json:"vram,omitempty"`
	// Device is where its VRAM is, or "ram".
	Device string `json:"device"`
	// LRURank ranks it by last use among the models that may be stopped:
	// 0 is the least recently used.
	LRURank int `json:"lru_rank"`
	// Reason says why the planner chose it.
	Reason string `json:"reason"`
}

// DryRunRefusal is why a request would be refused.
type DryRunRefusal struct {
	Message string `json:"message"`
	// Insufficient memory: the device, what the model needs there, what
	// is free and what stopping every model that may be stopped would add.
	Device   string `json:"device,omitempty"`
	Need     int64  `json:"need,omitempty"`
	Free     int64  `json:"free,omitempty"`
	Freeable int64  `json:"freeable,omitempty"`
	// RetryAt: a failed start backing off, until then.
	RetryAt *time.Time `json:"retry_at,omitempty"`
}

// DryRunOptions is what the caller knows that the swapper does not.
type DryRunOptions struct {
	// Busy reports whether a model has work (queued requests, say); a
	// model with requests in flight is always busy.
	Busy func(model string) bool
	// MaxWait is how long a request waits before a busy model in its way
	// is evicted (the batch policy's max_wait); zero: not known.
	MaxWait time.Duration
}

// whyOrder is the planner's order of preference (see choosePlan).
const whyOrder = "of the sets of models that free enough memory, the planner takes the one with the fewest busy models, then the fewest models, then the least recently used, then the least memory freed beyond the need"

// whyCost is whyOrder under scheduling.eviction cost.
const whyCost = "of the sets of models that free enough memory, the planner takes the one with the fewest busy models, then the least expected cost to bring back (each model's learned start time, or wake time for one put to sleep, times 1 + how often it was asked for lately; costs within 10%, or a quarter second, of each other count as equal), then the fewest models, then the least recently used"

// DryRun says what a request for model would do now; see DryRun (the
// type). It takes the lock only to read, as a real decision does, and
// changes nothing. model is an id (resolve aliases first);
// ErrUnknownModel if not configured, ErrClosed once closed.
func (s *Swapper) DryRun(model string, o DryRunOptions) (DryRun, error) {
	s.mu.Lock()
	defer s.mu.Unlock() // not s.unlock: nothing changed, no one to tell
	b, ok := s.backends[model]
	if !ok {
		return DryRun{}, fmt.Errorf("%w: %q", ErrUnknownModel, model)
	}
	if s.closed {
		return DryRun{}, ErrClosed
	}
	now := s.clock.Now()
	d := DryRun{Model: model, State: b.state.String(), Need: s.need(b), ExpectedWaitKnown: true,
		Wake: b.state == Asleep || b.state == Sleeping || b.state == Draining && b.cur != nil && b.cur.asleep != nil}
	if b.cur != nil {
		d.Device = deviceName(b.cur.gpu)
	}
	switch b.state {
	case Ready:
		d.Action = PlanReady
		d.finish()
		return d, nil
	case Starting:
		d.Action = PlanWait
		if b.start != nil {
			d.Device = deviceName(b.start.gpu)
		}
		d.WaitFor = append(d.WaitFor, s.waitStartLocked(b, now, &d.ExpectedWait, &d.ExpectedWaitKnown))
		d.finish()
		return d, nil
	case Draining, Stopping, Sleeping:
		// It is leaving: the request waits for it to stop (or sleep),
		// then starts (or wakes) it, planned again then.
		d.Action = PlanWait
		d.WaitFor = append(d.WaitFor, s.waitLeavingLocked(b, now, &d.ExpectedWaitKnown))
		d.addStart(b)
		d.finish()
		return d, nil
	}
	if now.Before(b.retryAt) {
		at := b.retryAt
		be := &BackoffError{Model: model, RetryAt: at, Last: b.lastErr}
		d.Action, d.Refused = PlanRefuse, &DryRunRefusal{Message: be.Error(), RetryAt: &at}
		d.finish()
		return d, nil
	}

	// The real decision's input (decideLocked), with the policy a request
	// that may evict busy models after max_wait has.
	in, transit := s.planInputLocked(b, Policy{Busy: o.Busy})
	pl, err := choosePlan(in)
	var ie *InsufficientMemoryError
	switch {
	case errors.As(err, &ie) && fitsLater(in, transit):
		d.Action = PlanWait
		d.WaitFor = s.transitLocked(b, now, &d.ExpectedWait, &d.ExpectedWaitKnown)
		d.addStart(b)
	case errors.As(err, &ie):
		d.Action, d.ExpectedWaitKnown = PlanRefuse, false
		d.Refused = &DryRunRefusal{Message: ie.Error(), Device: ie.Device, Need: ie.Need, Free: ie.Free, Freeable: ie.Freeable}
	case err != nil:
		return DryRun{}, err
	default:
		d.Action, d.Device = PlanStart, deviceName(pl.gpu)
		if s.opts.Memory == nil {
			d.Device = ""
		}
		var busy []string
		for _, v := range pl.victims {
			e := DryRunEviction{Model: v.model, Busy: v.busy, Sleep: v.sleep, Asleep: v.asleep, RAM: v.ram, VRAM: v.vram,
				Device: deviceName(v.gpu), LRURank: v.used, Reason: victimReason(v, in.loaded, in.cost)}
			d.Evict = append(d.Evict, e)
			if v.busy {
				busy = append(busy, v.model)
			}
		}
		if len(pl.victims) > 0 {
			d.Why = whyOrder
			if in.cost {
				d.Why = whyCost
			}
		}
		if len(busy) > 0 {
			// A request waits for them to go idle, or until it has
			// waited max_wait; then they are drained and stopped.
			d.Action, d.ExpectedWaitKnown = PlanWait, false
			for _, m := range busy {
				w := DryRunWait{Kind: "busy", Model: m}
				if o.MaxWait > 0 {
					w.AtMostS = seconds(o.MaxWait)
				}
				d.WaitFor = append(d.WaitFor, w)
			}
		}
		d.addStart(b)
	}
	d.finish()
	return d, nil
}

// addStart adds the model's own learned start time (its wake time, for a
// wake) to the expected wait.
func (d *DryRun) addStart(b *backend) {
	took := b.startTook
	if d.Wake {
		took = b.wakeTook
	}
	d.ExpectedWait += took
	if took == 0 {
		d.ExpectedWaitKnown = false
	}
}

func (d *DryRun) finish() {
	if d.Action == PlanRefuse {
		d.ExpectedWait = 0
	}
	d.ExpectedWaitS = d.ExpectedWait.Seconds()
}

func seconds(t time.Duration) *float64 {
	v := max(0, t.Seconds())
	return &v
}

// waitStartLocked is the wait for b's start in progress: its learned
// start time less what has passed, adding to the expected wait.
func (s *Swapper) waitStartLocked(b *backend, now time.Time, expected *time.Duration, known *bool) DryRunWait {
	w := DryRunWait{Kind: "start", Model: b.model.ID}
	if b.startTook > 0 {
		left := max(0, b.startTook-now.Sub(b.since))
		w.ExpectedS = seconds(left)
		*expected = max(*expected, left)
	} else {
		*known = false
	}
	return w
}

// waitLeavingLocked is the wait for b, draining or stopping, to be gone.
func (s *Swapper) waitLeavingLocked(b *backend, now time.Time, known *bool) DryRunWait {
	*known = false
	if b.state == Stopping {
		return DryRunWait{Kind: "stop", Model: b.model.ID, AtMostS: seconds(b.model.StopTimeout)}
	}
	if b.state == Sleeping {
		w := DryRunWait{Kind: "sleep", Model: b.model.ID}
		if b.sleep != nil {
			w.AtMostS = seconds(b.sleep.Timeout - now.Sub(b.since))
		}
		return w
	}
	w := DryRunWait{Kind: "drain", Model: b.model.ID, AtMostS: seconds(s.opts.DrainTimeout - now.Sub(b.since) + b.model.StopTimeout)}
	if b.cur != nil {
		w.InFlight = b.cur.inflight
	}
	return w
}

// transitLocked lists what holds the memory in transit (see
// planInputLocked): the loads, drains and stops in progress, and memory
// of stopped backends not yet seen free.
func (s *Swapper) transitLocked(b *backend, now time.Time, expected *time.Duration, known *bool) []DryRunWait {
	var ws []DryRunWait
	ids := make([]string, 0, len(s.backends))
	for id := range s.backends {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		o := s.backends[id]
		switch {
		case o == b:
		case o.state == Starting:
			ws = append(ws, s.waitStartLocked(o, now, expected, known))
		case o.state == Draining || o.state == Stopping || o.state == Sleeping:
			ws = append(ws, s.waitLeavingLocked(o, now, known))
		}
	}
	if len(s.unseen) > 0 {
		ws = append(ws, DryRunWait{Kind: "cooldown", AtMostS: seconds(s.opts.CooldownMax)})
		*known = false
	}
	return ws
}

// victimReason says why the planner chose v of the candidates.
func victimReason(v candidate, loaded []candidate, cost bool) string {
	lru := true
	for _, c := range loaded {
		if c.busy == v.busy && c.used < v.used {
			lru = false
		}
	}
	r := "idle"
	if v.busy {
		r = "busy (drained first)"
	}
	switch {
	case v.sleep:
		r += ", put to sleep rather than stopped (it frees enough and wakes faster than it starts)"
	case v.asleep:
		r += ", asleep (stopping it frees what it holds asleep)"
	}
	if cost {
		return r + ", among the cheapest to bring back (start time weighed by how often it is asked for)"
	}
	if lru {
		return r + ", least recently used"
	}
	return r + ", frees the memory needed with fewer models or less to spare than those used less recently"
}
