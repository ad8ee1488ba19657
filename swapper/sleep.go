package swapper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/process"
	"github.com/hotswap/hotswap/state"
)

// Sleep instead of stop. A model whose backend can sleep (config.Sleep:
// vLLM's sleep mode) may make room by sleeping: its process stays, and so
// does what it holds asleep (vLLM's level 1 keeps its weights in CPU
// memory and frees the GPU's); the rest is freed. A request for it then
// wakes it, in a fraction of a start. The planner weighs each such model
// both ways (choosePlan); this file carries out what it chose. A sleep
// that fails becomes a stop, and a wake that fails a stop and a start:
// each is logged and published (events.SleepFailed) with its reason.

// asleepNeed is what b is planned to hold asleep: its declared sleep
// memory raised to what it was measured to hold asleep. With neither,
// everything it needs awake, in RAM: vLLM's level 1 moves its weights to
// CPU memory, so until measured, sleeping is planned to free GPU memory
// and no RAM.
func (s *Swapper) asleepNeed(b *backend) config.Need {
	if b.sleep == nil {
		return config.Need{}
	}
	fp := s.opts.Footprints.Footprint(state.AsleepKey(b.model))
	decl := b.sleep.Memory
	if decl == (config.Need{}) && fp.RAM == 0 && fp.VRAM == 0 {
		n := s.need(b)
		return config.Need{RAM: n.RAM + n.VRAM}
	}
	return config.Need{RAM: max(decl.RAM, fp.RAM), VRAM: max(decl.VRAM, fp.VRAM)}
}

// sleepLocked sends a ready backend to sleep, for reason: from now on it
// takes no new requests (Draining), and on a goroutine of its own its
// requests in flight finish, then it is put to sleep (see drainAndStop).
// The channel returned is closed once it sleeps; if the sleep fails, it
// is stopped instead, and its gone closes.
func (s *Swapper) sleepLocked(b *backend, reason string) chan struct{} {
	inst := b.cur
	inst.asleep = make(chan struct{})
	inst.keep = s.asleepNeed(b)
	asleep := inst.asleep
	s.leaveLocked(b, reason)
	return asleep
}

// stopAsleepLocked stops an asleep backend, for reason: it has no
// requests to drain.
func (s *Swapper) stopAsleepLocked(b *backend, reason string) {
	inst := b.cur
	b.enter(Stopping, s.clock.Now())
	s.changedLocked(b)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.stopDrained(b, inst, reason)
	}()
}

// putToSleep makes b's drained instance sleep, for reason, and reports
// whether it sleeps. When it does not, the caller stops it.
func (s *Swapper) putToSleep(b *backend, inst *instance, sl *config.Sleep, reason string) bool {
	log := s.log.With(zap.String("model", b.model.ID), zap.String("reason", reason))
	begin := time.Now()
	err := s.callBackend(b, inst, "sleep", sl.Sleep, sl.Timeout)
	took := time.Since(begin)
	s.mu.Lock()
	if b.cur != inst || inst.deadErr != nil || b.state != Sleeping {
		// It died meanwhile (its watch retires it), or is being stopped
		// (hotswap closing): the waiting start sees it gone.
		s.unlock()
		return true
	}
	if err != nil {
		inst.noSleep = true
		s.unlock()
		if s.ctx.Err() != nil {
			return false // hotswap is closing: it stops with the rest
		}
		log.Warn("putting the backend to sleep failed; stopping it instead", zap.Error(err))
		s.opts.Events.Publish(events.Event{Type: events.SleepFailed, Model: b.model.ID, Message: err.Error(),
			Data: map[string]any{"action": "sleep", "fallback": "stop"}})
		return false
	}
	// What it holds now is what it keeps asleep: counted as planned until
	// the next look measures it (see asleepMeasured).
	inst.need = inst.keep
	inst.measured = false
	b.enter(Asleep, s.clock.Now())
	close(inst.asleep)
	inst.asleep = nil
	s.changedLocked(b)
	if b.next != nil && b.model.RestartNeeded(b.next) {
		// Reconfigured as it went to sleep: asleep it would wake with the
		// old configuration. It goes, and the next request starts the new.
		s.stopAsleepLocked(b, reconfigured)
	}
	s.unlock()
	log.Info("backend asleep", zap.Duration("took", took))
	s.opts.Events.Publish(events.Event{Type: events.Asleep, Model: b.model.ID, Message: reason,
		Data: map[string]any{"seconds": took.Seconds()}})
	s.refresh(due{b: b, inst: inst, learn: true, asleep: true})
	return true
}

// wake wakes dec's asleep instance of b, and reports whether it is ready.
// When the wake fails, the instance is stopped and b is left starting,
// for run to start it afresh.
func (s *Swapper) wake(b *backend, dec *decision) bool {
	inst := dec.self
	s.mu.Lock()
	sl := b.sleep
	// From here on the instance counts for the whole need: it takes it as
	// it wakes.
	dec.waking = true
	inst.need = dec.need
	s.changedLocked(nil)
	s.unlock()
	log := s.log.With(zap.String("model", b.model.ID), zap.Int("pid", inst.proc.Pid()))
	var err error
	begin := s.clock.Now()
	switch {
	case isClosed(inst.gone) || isClosed(inst.proc.Done()):
		err = errors.New("its process had exited")
	case sl == nil:
		err = errors.New("its configuration no longer says how to wake it")
	default:
		if err = s.callBackend(b, inst, "wake", sl.Wake, sl.Timeout); err == nil {
			// Awake is ready only once it answers its health check.
			err = s.awaitReady(b, inst, dec.ctx)
		}
	}
	if err == nil {
		s.mu.Lock()
		if b.cur == inst && !s.closed && !isClosed(inst.proc.Done()) {
			inst.readyAt = s.clock.Now()
			took := inst.readyAt.Sub(begin)
			b.wakeTook = took
			b.enter(Ready, inst.readyAt)
			b.start = nil
			b.lastUsed = inst.readyAt
			s.lru.Add(b.model.ID, struct{}{})
			s.changedLocked(b)
			s.unlock()
			log.Info("backend awake", zap.Duration("took", took))
			s.opts.Events.Publish(events.Event{Type: events.Ready, Model: b.model.ID,
				Data: map[string]any{"pid": inst.proc.Pid(), "seconds": took.Seconds(), "wake": true}})
			s.measure(b, inst, true)
			return true
		}
		s.unlock()
		err = errors.New("its process exited as it woke")
	}
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrUnloaded) || dec.ctx.Err() != nil {
		s.stopFailedWake(b, inst)
		return false
	}
	log.Warn("waking the backend failed; stopping it and starting it again", zap.Error(err))
	s.opts.Events.Publish(events.Event{Type: events.SleepFailed, Model: b.model.ID, Message: err.Error(),
		Data: map[string]any{"action": "wake", "fallback": "restart"}})
	s.stopFailedWake(b, inst)
	return false
}

// stopFailedWake stops inst, whose wake failed or was called off, and
// takes it from b, which stays Starting: the start goes on with a new
// process, or ends.
func (s *Swapper) stopFailedWake(b *backend, inst *instance) {
	if f := s.opts.BeforeStop; f != nil {
		f(b.model.ID, inst.id)
	}
	inst.proc.Stop(b.model.StopTimeout)
	exited := s.lookMark()
	s.refresh()
	s.mu.Lock()
	if b.cur == inst {
		s.dropInstanceLocked(b, inst, exited)
	}
	if b.start != nil {
		b.start.wake, b.start.waking, b.start.self = false, false, nil
	}
	s.changedLocked(b)
	s.unlock()
}

// callBackend makes action (a sleep or a wake) on b's instance inst, for
// at most timeout: an HTTP request to the backend, which must answer 2xx,
// or a command, which must exit 0. what names it in errors and logs.
func (s *Swapper) callBackend(b *backend, inst *instance, what string, a config.Action, timeout time.Duration) error {
	m := b.model
	if a.Method == "" {
		argv := expandCommand(m, a.Argv, inst.proc.Pid(), inst.port)
		logged := expandCommand(m, a.LogArgv, inst.proc.Pid(), inst.port)
		s.log.Info("running the backend's "+what+" command", zap.String("model", m.ID),
			zap.Strings("argv", redactArgv(logged)))
		out := s.log.Named("backend").With(zap.String("model", m.ID), zap.String("from", what))
		return process.RunCommand(what+" command", argv, func(line string) { out.Info(line) }, timeout)
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, a.Method, inst.upstream+a.Path, nil)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, a, err)
	}
	for _, h := range m.Headers {
		req.Header.Set(h.Name, h.Value) // the backend's own credentials
	}
	resp, err := s.calls.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s %s: no answer within %v", what, a, timeout)
		}
		return fmt.Errorf("%s %s: %w", what, a, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: the backend answered %s: %s", what, a, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// learnAsleep raises what b's model is known to hold asleep to u, where
// it grew.
func (s *Swapper) learnAsleep(b *backend, u probe.Usage) {
	key := state.AsleepKey(b.model)
	if !s.opts.Footprints.Observe(key, u.RAM, u.TotalVRAM()) {
		return
	}
	fp := s.opts.Footprints.Footprint(key)
	s.opts.Events.Publish(events.Event{Type: events.Footprint, Model: b.model.ID,
		Data: map[string]any{"ram": fp.RAM, "vram": fp.VRAM, "asleep": true}})
	s.log.Info("learned footprint asleep", zap.String("model", b.model.ID),
		zap.String("ram", config.FormatSize(fp.RAM)), zap.String("vram", config.FormatSize(fp.VRAM)))
	if err := s.opts.Footprints.Save(); err != nil {
		s.log.Warn("saving footprints", zap.Error(err))
	}
}
