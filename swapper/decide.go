package swapper

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
)

// Policy is what the caller of Start knows and decides: which models have
// work (the swapper knows only the requests in flight; a router also knows
// its queues, and which models served a moment ago), and whether this
// start may stop such models.
type Policy struct {
	// Busy reports whether a model has work; nil means requests in
	// flight only. A model with requests in flight is always busy.
	Busy func(model string) bool
	// EvictBusy lets the start stop busy models, after draining them.
	// Without it, a start that would have to is not made (*BusyError).
	EvictBusy bool
	// Reason says why, for the log.
	Reason string

	// evictIdle stops every idle model that may be stopped, needed or
	// not: the retry of a start that ran out of memory the probe did not
	// see.
	evictIdle bool
}

// Decision is how a model comes in.
type Decision struct {
	// Started is false when the model was loading or ready already.
	Started bool
	// Victims are the models stopped or put to sleep to make room, Busy
	// those of them that were busy (drained first), Slept those put to
	// sleep.
	Victims, Busy, Slept []string
	// Wake says the model was asleep: it is woken rather than started.
	Wake bool
	// Device is where the model goes: "ram", "gpu0", ...
	Device string
}

// ErrMemoryInTransit refuses to decide now: the memory a start needs is
// held by starts in progress (which cannot be stopped until they are
// ready) or by models already leaving. Decide again when they settle.
var ErrMemoryInTransit = errors.New("the memory needed is held by loads or stops in progress")

// ErrLeaving refuses to start a model that is on its way out: decide again
// once it has stopped.
var ErrLeaving = errors.New("the model is being stopped")

// BusyError refuses a start that would stop busy models, when the policy
// does not allow it. Nothing was changed.
type BusyError struct {
	Model   string
	Victims []string // what the start would stop
	Busy    []string // those of them that are busy
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("starting %q would stop busy models %s", e.Model, strings.Join(e.Busy, ", "))
}

// Start decides how model comes in and commits the decision, without
// waiting for it to be carried out: the models it evicts take no new
// requests from now on, the memory it needs is reserved, and the stops and
// the start go on in the background. A model that is ready or starting
// already needs nothing (Started false). The watchers (see Watch) are told
// when the model is ready, or stopped again if the start failed.
//
// Errors: *BusyError (nothing done), ErrMemoryInTransit and ErrLeaving
// (decide again when the watchers are told something changed),
// *InsufficientMemoryError, *BackoffError, ErrClosed, ErrUnknownModel.
func (s *Swapper) Start(model string, p Policy) (Decision, error) {
	s.mu.Lock()
	b, ok := s.backends[model]
	if !ok {
		s.unlock()
		return Decision{}, fmt.Errorf("%w: %q", ErrUnknownModel, model)
	}
	d, err := s.startLocked(b, p)
	s.unlock()
	return d, err
}

func (s *Swapper) startLocked(b *backend, p Policy) (Decision, error) {
	switch {
	case s.closed:
		return Decision{}, ErrClosed
	case b.state == Ready || b.state == Starting:
		return Decision{}, nil
	case b.state != Stopped && b.state != Asleep:
		return Decision{}, ErrLeaving
	}
	if now := s.clock.Now(); now.Before(b.retryAt) {
		return Decision{}, &BackoffError{Model: b.model.ID, RetryAt: b.retryAt, Last: b.lastErr}
	}
	return s.decideLocked(b, p)
}

// decision is a start being carried out: where the model goes, what it
// needs, and the instances that leave for it.
type decision struct {
	gpu     int
	need    config.Need
	victims []victim
	// wake says the model was asleep: self, its instance, is woken rather
	// than a process started (unless the wake fails). waking is set once
	// the wake call is made: self counts for the whole need from then on.
	wake   bool
	waking bool
	self   *instance
	// retried says this start follows one that ran out of memory.
	retried bool
	// ctx ends when the start is called off (an unload) or hotswap closes.
	ctx    context.Context
	cancel context.CancelFunc
	// aheadBudget bounds the bytes read ahead while it waits (see readAhead).
	aheadBudget int64
}

// victim is an instance that leaves for a start: it stops, or, where
// asleep is set, it goes to sleep (asleep closes then; gone closes if the
// sleep failed and it stopped instead).
type victim struct {
	inst   *instance
	asleep chan struct{}
}

// decideLocked is the one place where a start is decided: the plan is
// chosen from the snapshot and committed before the lock is let go.
func (s *Swapper) decideLocked(b *backend, p Policy) (Decision, error) {
	in, transit := s.planInputLocked(b, p)
	var forced []candidate
	if p.evictIdle {
		in, forced = withIdleGone(in)
	}
	pl, err := choosePlan(in)
	if err != nil {
		var ie *InsufficientMemoryError
		if errors.As(err, &ie) && fitsLater(in, transit) {
			return Decision{}, ErrMemoryInTransit
		}
		s.say(zap.WarnLevel, "refusing model: not enough memory", zap.String("model", b.model.ID), zap.Error(err))
		s.publish(events.Event{Type: events.Refuse, Model: b.model.ID, Message: err.Error()})
		return Decision{}, err
	}
	budget := aheadBudget(in, pl.victims)
	pl.victims = append(forced, pl.victims...)
	wake := b.state == Asleep
	d := Decision{Started: true, Device: deviceName(pl.gpu), Wake: wake}
	for _, v := range pl.victims {
		d.Victims = append(d.Victims, v.model)
		if v.busy {
			d.Busy = append(d.Busy, v.model)
		}
		if v.sleep {
			d.Slept = append(d.Slept, v.model)
		}
	}
	if len(d.Busy) > 0 && !p.EvictBusy {
		return Decision{}, &BusyError{Model: b.model.ID, Victims: d.Victims, Busy: d.Busy}
	}

	// Commit: from here on the victims take no new requests, and the
	// memory is counted as this start's. A prefetch for requests queued
	// for the model stops: the start's own read-ahead takes over.
	s.stopPrefetchLocked(b)
	dec := &decision{gpu: pl.gpu, need: s.need(b), retried: p.evictIdle, aheadBudget: budget, wake: wake}
	if wake {
		dec.self, dec.gpu = b.cur, b.cur.gpu
		d.Device = deviceName(dec.gpu)
	}
	dec.ctx, dec.cancel = context.WithCancel(s.ctx)
	for _, v := range pl.victims {
		vb := s.backends[v.model]
		vic := victim{inst: vb.cur}
		reason := "making room for " + b.model.ID
		data := map[string]any{"reason": "making room", "for": b.model.ID, "busy": v.busy}
		if v.sleep {
			data["sleep"] = true
		}
		s.publish(events.Event{Type: events.Evict, Model: v.model, Data: data})
		switch {
		case v.sleep:
			vic.asleep = s.sleepLocked(vb, reason)
		case vb.state == Asleep:
			s.stopAsleepLocked(vb, reason)
		default:
			s.leaveLocked(vb, reason)
		}
		dec.victims = append(dec.victims, vic)
	}
	b.enter(Starting, s.clock.Now())
	b.start = dec
	s.changedLocked(b)
	fields := []zap.Field{zap.String("model", b.model.ID), zap.String("device", d.Device),
		zap.String("need_ram", config.FormatSize(dec.need.RAM)), zap.String("need_vram", config.FormatSize(dec.need.VRAM))}
	if len(d.Victims) > 0 {
		fields = append(fields, zap.Strings("evicting", d.Victims), zap.Strings("busy", d.Busy))
	}
	if len(d.Slept) > 0 {
		fields = append(fields, zap.Strings("putting_to_sleep", d.Slept))
	}
	if p.Reason != "" {
		fields = append(fields, zap.String("reason", p.Reason))
	}
	msg := "starting"
	if wake {
		msg = "waking"
	}
	s.say(zap.InfoLevel, msg, fields...)
	data := map[string]any{"device": d.Device, "evicting": d.Victims, "busy": d.Busy}
	if len(d.Slept) > 0 {
		data["sleeping"] = d.Slept
	}
	if wake {
		data["wake"] = true
	}
	s.publish(events.Event{Type: events.Start, Model: b.model.ID, Message: p.Reason, Data: data})
	s.wg.Add(1)
	go s.run(b, dec)
	return d, nil
}

// withIdleGone takes every idle candidate out of in, its memory added to
// what is free, and returns them.
func withIdleGone(in planInput) (planInput, []candidate) {
	free := make(map[int]int64, len(in.free))
	for d, n := range in.free {
		free[d] = n
	}
	var idle, rest []candidate
	for _, c := range in.loaded {
		if c.busy {
			rest = append(rest, c)
			continue
		}
		idle = append(idle, c)
		free[ramDevice] += c.ram
		if c.gpu != ramDevice {
			free[c.gpu] += c.vram
		}
	}
	in.free, in.loaded = free, rest
	return in, idle
}

// fitsLater reports whether in would fit once the memory in transit (held
// by loads and stops in progress) is free.
func fitsLater(in planInput, transit map[int]int64) bool {
	if len(transit) == 0 {
		return false
	}
	free := make(map[int]int64, len(in.free))
	for d, n := range in.free {
		free[d] = n + transit[d]
	}
	in.free = free
	_, err := choosePlan(in)
	return err == nil
}
