package swapper

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/process"
)

// run carries out a decided start of b, in the order it happens: the
// victims leave (they drain and stop in parallel, see leave.go), the
// memory is awaited, the process is started and awaited, and the backend
// is ready. No lock is held across any of these waits. If the world
// changes on the way, run ends the start and the owner decides again
// (see fail and retryOOM).
func (s *Swapper) run(b *backend, dec *decision) {
	defer s.wg.Done()
	defer dec.cancel()
	stopAhead := s.readAhead(b, dec)
	for _, v := range dec.victims {
		select {
		case <-v.inst.gone:
		case <-v.asleep: // nil, and never ready, for a victim that stops
		case <-dec.ctx.Done():
			s.failStart(b, dec, s.calledOff())
			return
		}
	}
	if err := s.awaitRoom(b, dec); err != nil {
		s.failStart(b, dec, err)
		return
	}
	stopAhead() // the backend reads its files itself from here on
	if dec.wake {
		if s.wake(b, dec) {
			return
		}
		if dec.ctx.Err() != nil {
			s.fail(b, nil, s.calledOff())
			return
		}
		// The wake failed and its process is gone: a start, on what that
		// freed.
		if err := s.awaitRoom(b, dec); err != nil {
			s.fail(b, nil, err)
			return
		}
	}
	inst, err := s.spawn(b, dec)
	if err != nil {
		s.fail(b, nil, err)
		return
	}
	if err := s.awaitReady(b, inst, dec.ctx); err != nil {
		s.failed(b, dec, inst, err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.unlock()
		s.fail(b, inst, ErrClosed)
		return
	}
	if isClosed(inst.proc.Done()) {
		// It died just after it answered: watch leaves a starting backend
		// to its start, so it is this start's failure.
		s.unlock()
		s.failed(b, dec, inst, probe.ErrExited)
		return
	}
	// Ready at once: its requests need not wait for the measuring, and
	// until it is measured it counts for what it was planned to need.
	inst.readyAt = s.clock.Now()
	b.startTook = inst.readyAt.Sub(inst.started)
	b.enter(Ready, s.clock.Now())
	b.start = nil
	b.failures, b.lastErr = 0, nil
	b.lastUsed = inst.readyAt
	s.lru.Add(b.model.ID, struct{}{})
	s.changedLocked(b)
	s.unlock()
	s.log.Info("backend ready", zap.String("model", b.model.ID), zap.Int("pid", inst.proc.Pid()),
		zap.Duration("took", inst.readyAt.Sub(inst.started)))
	s.opts.Events.Publish(events.Event{Type: events.Ready, Model: b.model.ID,
		Data: map[string]any{"pid": inst.proc.Pid(), "seconds": inst.readyAt.Sub(inst.started).Seconds()}})
	s.measure(b, inst, true)
}

// failStart ends a start before its process is started or woken. A wake
// called off (an unload, hotswap closing) stops the asleep process too;
// one whose memory did not come back leaves it asleep, as it was, and
// the next request decides again.
func (s *Swapper) failStart(b *backend, dec *decision, err error) {
	if !dec.wake || dec.self == nil {
		s.fail(b, nil, err)
		return
	}
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrUnloaded) {
		s.stopFailedWake(b, dec.self)
		s.fail(b, nil, err)
		return
	}
	s.mu.Lock()
	defer s.unlock()
	inst := dec.self
	if b.cur != inst || isClosed(inst.gone) {
		s.failLocked(b, err)
		s.settledLocked(b)
		return
	}
	s.say(zap.WarnLevel, "not waking the backend: its memory did not come back; it stays asleep",
		zap.String("model", b.model.ID), zap.Error(err))
	b.enter(Asleep, s.clock.Now())
	b.start = nil
	s.changedLocked(b)
}

// awaitRoom waits until the memory b needs is free: the victims' memory
// can take a moment to show (a GPU driver's above all), and a fixed sleep
// is either too short or wasted. Memory is read afresh on each look, and
// the look is judged under the lock with every other decision's
// reservations, so that two starts never take the same memory. When it
// fits, the start's reservation becomes the process's (see spawn).
//
// Memory that does not come back within cooldown_max ends the start; so
// does a start with nothing to wait for that does not fit (the snapshot it
// was decided on was stale): the owner decides again, on the fresh numbers.
func (s *Swapper) awaitRoom(b *backend, dec *decision) error {
	if s.opts.Memory == nil {
		return nil
	}
	begin := s.clock.Now()
	interval := 5 * time.Millisecond
	for {
		s.refresh()
		s.mu.Lock()
		in, _ := s.planInputLocked(b, Policy{})
		in.pin, in.loaded = dec.gpu, nil
		if in.vram == 0 {
			in.pin = ramDevice
		}
		_, err := choosePlan(in)
		cooldownMax := s.opts.CooldownMax // a reload may change it
		s.unlock()
		if err == nil {
			if len(dec.victims) > 0 {
				took := s.clock.Now().Sub(begin)
				s.log.Info("memory is back", zap.String("model", b.model.ID), zap.Duration("cooldown", took))
				s.opts.Events.Publish(events.Event{Type: events.Cooldown, Model: b.model.ID,
					Data: map[string]any{"seconds": took.Seconds()}})
			}
			return nil
		}
		waited := s.clock.Now().Sub(begin)
		if len(dec.victims) == 0 || waited >= cooldownMax {
			if len(dec.victims) > 0 {
				s.log.Warn("memory did not come back within cooldown_max", zap.String("model", b.model.ID),
					zap.Duration("cooldown_max", cooldownMax), zap.Error(err))
			}
			return err
		}
		if !clock.Sleep(s.clock, min(interval, cooldownMax-waited), dec.ctx.Done()) {
			return s.calledOff()
		}
		interval = min(interval*2, 100*time.Millisecond)
	}
}

// sleep waits d on the swapper's clock; false if it closed first.
func sleep(s *Swapper, d time.Duration) bool { return clock.Sleep(s.clock, d, s.ctx.Done()) }

// calledOff is why a start's wait ended early: hotswap closing, or an
// operator unloading the model.
func (s *Swapper) calledOff() error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	return ErrUnloaded
}

// spawn starts b's process on the GPU decided, and makes it b's instance:
// from here on its reservation is the instance's (its need less what it is
// measured to use), no longer the decision's.
func (s *Swapper) spawn(b *backend, dec *decision) (*instance, error) {
	m := b.model
	port := 0
	if m.NeedsPort() {
		var err error
		if port, err = s.ports.Acquire(); err != nil {
			return nil, err
		}
	}
	argv, env, upstream := m.Expand(port)
	var pin []string
	if dec.gpu != ramDevice && m.GPU == config.NoGPU {
		// Placed by hotswap: shown that GPU alone, by the variable its
		// runtime reads (see pinEnv).
		s.mu.Lock()
		pin = pinEnv(s.snap.devs, dec.gpu, m.GPUEnv, env)
		s.unlock()
		env = append(env, pin...)
	}
	out := s.log.Named("backend").With(zap.String("model", m.ID))
	fields := []zap.Field{zap.String("model", m.ID), zap.Strings("argv", redactArgv(m.LogArgv(port))),
		zap.Int("port", port), zap.String("device", deviceName(dec.gpu))}
	if len(pin) > 0 {
		fields = append(fields, zap.Strings("gpu_env", pin))
	}
	s.log.Info("starting backend", fields...)
	s.mu.Lock()
	s.spawning++
	s.spawnGen++
	s.unlock()
	proc, err := s.opts.Starter.Start(process.Spec{
		Argv:   argv,
		Env:    env,
		Output: func(line string) { out.Info(line) },
		Stop:   s.stopCommand(m, port),
		Kill:   m.StopSignal == config.StopKill,
	})
	s.mu.Lock()
	s.spawning--
	s.spawnGen++
	if err != nil {
		s.unlock()
		s.ports.Release(port)
		return nil, &StartError{Model: m.ID, Err: err}
	}
	inst := &instance{
		id:       s.nextInstanceIDLocked(),
		proc:     proc,
		port:     port,
		upstream: upstream,
		started:  s.clock.Now(),
		gone:     make(chan struct{}),
		cut:      make(chan struct{}),
		dead:     make(chan struct{}),
		addr:     hostPort(upstream),
		gpu:      dec.gpu,
		need:     dec.need,
	}
	b.cur = inst
	s.unlock()
	s.wg.Add(1)
	go s.watch(b, inst)
	return inst, nil
}

// secretFlag matches the flags whose value is a secret: llama-server's and
// vLLM's --api-key, a --hf-token, a --password.
var secretFlag = regexp.MustCompile(`(?i)^--?[a-z0-9_-]*(api[-_]?key|token|secret|password|passwd)$`)

// redactArgv is argv as the log shows it: the value of a secret flag
// (--api-key KEY, --api-key=KEY) replaced, since the log reaches the
// status page and whoever reads it.
func redactArgv(argv []string) []string {
	out := slices.Clone(argv)
	for i := 1; i < len(out); i++ {
		flag, _, inline := strings.Cut(out[i], "=")
		switch {
		case !secretFlag.MatchString(flag):
		case inline:
			out[i] = flag + "=[redacted]"
		case i+1 < len(out):
			out[i+1] = "[redacted]"
			i++
		}
	}
	return out
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// awaitReady waits until inst is healthy: the health path is polled at a
// steady short interval, and at once whenever the backend writes output.
// The timeout is a stall timeout: it restarts on output.
func (s *Swapper) awaitReady(b *backend, inst *instance, ctx context.Context) error {
	m := b.model
	err := s.opts.Readiness.Wait(ctx, inst.upstream+m.Health, probe.WaitOptions{
		Timeout:      m.HealthTimeout,
		LastActivity: inst.proc.LastOutput,
		Wake:         inst.proc.Wrote(),
		Exited:       inst.proc.Done(),
	})
	if err != nil && ctx.Err() != nil {
		return s.calledOff()
	}
	return err
}

// failed ends a start whose process did not become ready. A backend that
// ran out of memory next to other models is started again once, after
// every idle model has been stopped: the owner decides that retry (see
// retryOOM). Any other failure is the backend's own, and backs off.
func (s *Swapper) failed(b *backend, dec *decision, inst *instance, err error) {
	se := &StartError{Model: b.model.ID, Err: err}
	if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrUnloaded) {
		inst.proc.Stop(b.model.StopTimeout)
		se.Output = inst.proc.Tail()
		if errors.Is(err, probe.ErrExited) {
			exit := inst.proc.ExitErr()
			se.OutOfMemory = process.OutOfMemory(exit, se.Output)
			why := process.DescribeExit(exit)
			if se.OutOfMemory {
				why += ", out of memory"
			}
			se.Err = fmt.Errorf("%w (%s)", err, why)
		}
		s.log.Error("backend failed to start", zap.String("model", b.model.ID), zap.Error(se.Err),
			zap.Strings("output", se.Output))
	}
	if se.OutOfMemory && !dec.retried && s.retryOOM(b, inst, se) {
		return
	}
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrUnloaded) {
		s.fail(b, inst, err)
		return
	}
	s.fail(b, inst, se)
}

// retryOOM decides, as the owner, the retry of a start that ran out of
// memory next to other models: every idle model goes. It reports false
// when there is nothing to retry with (no model was loaded beside it).
func (s *Swapper) retryOOM(b *backend, inst *instance, se *StartError) bool {
	exited := s.lookMark()
	s.refresh() // the process is gone: decide on what that freed
	s.mu.Lock()
	defer s.unlock()
	others := 0
	for _, o := range s.backends {
		if o != b && o.cur != nil {
			others++
		}
	}
	if others == 0 || s.closed {
		return false
	}
	s.say(zap.WarnLevel, "backend ran out of memory while loading next to other models; stopping idle models and retrying once",
		zap.String("model", b.model.ID), zap.Int("resident", others), zap.Error(se))
	s.retireLocked(b, inst, exited)
	b.enter(Stopped, s.clock.Now())
	b.start = nil
	if _, err := s.decideLocked(b, Policy{evictIdle: true, Reason: "retry after running out of memory"}); err != nil {
		s.failLocked(b, se)
		s.settledLocked(b)
		return true
	}
	return true
}

// fail ends a start with err: b is stopped, its process (if any) gone.
// A failure of the backend itself starts a back-off; a lack of memory or a
// shutdown does not, since nothing is wrong with the backend. Callers
// waiting on b see it stopped and decide again.
func (s *Swapper) fail(b *backend, inst *instance, err error) {
	var exited uint64
	if inst != nil {
		inst.proc.Stop(b.model.StopTimeout)
		exited = s.lookMark()
		s.refresh()
	}
	s.mu.Lock()
	if inst != nil && b.cur == inst {
		s.retireLocked(b, inst, exited)
	}
	s.failLocked(b, err)
	s.settledLocked(b)
	s.unlock()
}

func (s *Swapper) failLocked(b *backend, err error) {
	b.enter(Stopped, s.clock.Now())
	b.start = nil
	s.changedLocked(b)
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrUnloaded) || s.ctx.Err() != nil {
		return
	}
	s.publish(events.Event{Type: events.Fail, Model: b.model.ID, Message: err.Error(),
		Data: map[string]any{"cause": failCause(err)}})
	var ie *InsufficientMemoryError
	if errors.As(err, &ie) {
		return
	}
	se, ok := err.(*StartError)
	if !ok {
		se = &StartError{Model: b.model.ID, Err: err}
	}
	b.failures++
	backoff := s.opts.BackoffBase << (b.failures - 1)
	if backoff > s.opts.BackoffMax || backoff <= 0 {
		backoff = s.opts.BackoffMax
	}
	b.retryAt = s.clock.Now().Add(backoff)
	se.RetryAt = b.retryAt
	b.lastErr = se
}

// measure records what inst uses now, with the devices, and, with learn,
// raises its model's learned footprint if it grew. A backend that is still
// loading has not reached its footprint, so only ready ones teach anything.
func (s *Swapper) measure(b *backend, inst *instance, learn bool) {
	s.refresh(due{b: b, inst: inst, learn: learn})
}
