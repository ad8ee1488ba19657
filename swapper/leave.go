package swapper

import (
	"context"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/process"
)

// leaveLocked sends a ready backend on its way out, for reason: from now
// on it takes no new requests (Draining), and on a goroutine of its own
// its requests in flight finish, for at most the drain timeout, then its
// process is stopped.
func (s *Swapper) leaveLocked(b *backend, reason string) {
	inst := b.cur
	// A keep_alive holds for the run it was given to.
	b.keep = keepAlive{}
	b.enter(Draining, s.clock.Now())
	b.restart = reason == reconfigured
	s.changedLocked(b)
	s.wg.Add(1)
	go s.drainAndStop(b, inst, reason, s.opts.DrainTimeout)
}

// drainAndStop waits for inst's requests to finish, or for the drain
// timeout, then stops it, or puts it to sleep where that was decided
// (see sleepLocked) and its requests all finished.
func (s *Swapper) drainAndStop(b *backend, inst *instance, reason string, drain time.Duration) {
	defer s.wg.Done()
	who := []zap.Field{zap.String("model", b.model.ID), zap.String("reason", reason)}
	timeout := s.clock.NewTimer(drain)
	defer timeout.Stop()
	s.mu.Lock()
	if inst.inflight > 0 {
		s.say(zap.InfoLevel, "draining backend", append(who, zap.Int("in_flight", inst.inflight))...)
	}
	// Not ended by Close: Close gives these requests its own grace, and
	// its stop ends this wait (the instance is gone).
	waitIdleLocked(s, inst, timeout.C(), inst.cut)
	// It died, was found dead (its watch stops it) or was stopped while
	// draining.
	if b.cur != inst || inst.deadErr != nil {
		s.unlock()
		return
	}
	if inst.inflight > 0 {
		if isClosed(inst.cut) {
			inst.cause = ErrUnloaded
			s.say(zap.WarnLevel, "unloaded by force under its requests", append(who, zap.Int("in_flight", inst.inflight))...)
		} else {
			inst.cause = &DrainTimeoutError{Model: b.model.ID, Timeout: drain, Reason: reason}
			s.say(zap.WarnLevel, "drain timeout passed; stopping backend under its requests",
				append(who, zap.Int("in_flight", inst.inflight), zap.Duration("drain_timeout", drain))...)
		}
	} else if sl := b.sleep; inst.asleep != nil && sl != nil && !inst.noSleep && !isClosed(inst.cut) && !s.closed {
		b.enter(Sleeping, s.clock.Now())
		s.changedLocked(b)
		s.unlock()
		if s.putToSleep(b, inst, sl, reason) {
			return
		}
		s.mu.Lock()
		if b.cur != inst {
			s.unlock()
			return
		}
	}
	b.enter(Stopping, s.clock.Now())
	s.changedLocked(b)
	s.unlock()
	s.stopDrained(b, inst, reason)
}

// stopDrained stops inst, b's drained (or asleep) backend, for reason,
// and retires it.
func (s *Swapper) stopDrained(b *backend, inst *instance, reason string) {
	who := []zap.Field{zap.String("model", b.model.ID), zap.String("reason", reason)}
	begin := time.Now()
	if f := s.opts.BeforeStop; f != nil {
		f(b.model.ID, inst.id)
	}
	inst.proc.Stop(b.model.StopTimeout)
	s.log.Info("backend stopped", append(who, zap.Duration("took", time.Since(begin)),
		zap.String("exit", process.DescribeExit(inst.proc.ExitErr())))...)
	s.opts.Events.Publish(events.Event{Type: events.Stop, Model: b.model.ID, Message: reason,
		Data: map[string]any{"seconds": time.Since(begin).Seconds()}})
	s.retire(b, inst)
}

// stopCommand is m's stop command for the backend started on port, or
// nil when m has none (SIGTERM stops it). Its ${PID} is the backend's
// pid; it is logged as LogStop (what came from hotswap's environment left
// as its reference, secret flags redacted), its output as the backend's.
func (s *Swapper) stopCommand(m *config.Model, port int) *process.StopCommand {
	if len(m.Stop) == 0 {
		return nil
	}
	logStop := m.LogStop
	if logStop == nil {
		logStop = m.Stop // a Model built by hand
	}
	out := s.log.Named("backend").With(zap.String("model", m.ID), zap.String("from", "stop"))
	var logged []string
	return &process.StopCommand{
		Argv: func(pid int) []string {
			logged = redactArgv(expandCommand(m, logStop, pid, port))
			s.log.Info("running the backend's stop command", zap.String("model", m.ID), zap.Int("pid", pid),
				zap.Strings("argv", logged))
			return expandCommand(m, m.Stop, pid, port)
		},
		Output: func(line string) { out.Info(line) },
		Failed: func(err error) {
			s.log.Warn("the backend's stop command failed; stopping it with SIGTERM, then SIGKILL",
				zap.String("model", m.ID), zap.Strings("argv", logged), zap.Error(err))
		},
	}
}

// expandCommand is a command of m's run on a running backend (its stop,
// sleep or wake command) with ${PID}, ${PORT} and ${MODEL} expanded.
func expandCommand(m *config.Model, tmpl []string, pid, port int) []string {
	r := strings.NewReplacer(config.PlaceholderPID, strconv.Itoa(pid),
		config.PlaceholderPort, strconv.Itoa(port), config.PlaceholderModel, m.ID)
	out := make([]string, len(tmpl))
	for i, a := range tmpl {
		out[i] = r.Replace(a)
	}
	return out
}

// retire marks an instance whose process has exited as gone. Memory is
// looked at first: until then the snapshot counts the process's memory as
// used, and a decision made on it would refuse what now fits.
func (s *Swapper) retire(b *backend, inst *instance) {
	exited := s.lookMark()
	s.refresh()
	s.mu.Lock()
	s.retireLocked(b, inst, exited)
	s.settledLocked(b)
	s.unlock()
}

// lookMark numbers the looks at memory begun so far: a look numbered
// after it began after lookMark was called.
func (s *Swapper) lookMark() uint64 {
	s.mu.Lock()
	defer s.unlock()
	return s.looks
}

// unseenFree is the memory of a stopped backend that the snapshot still
// counts as used: the snapshot's look began before the process had gone
// (the look made as it went failed, or was dropped while another backend
// started). Until a look that began after sees it free, it is memory in
// transit, so that a start that needs it waits for that look rather than
// being refused, or evicting another model for memory already free.
type unseenFree struct {
	ram, vram int64
	gpu       int
	mark      uint64 // the look mark taken once the process had gone
}

// retireLocked marks inst as gone: b is stopped, its port free, and
// whoever waits on the instance is told. exited is a look mark taken once
// its process had gone (see lookMark).
func (s *Swapper) retireLocked(b *backend, inst *instance, exited uint64) {
	if b.cur == inst {
		b.enter(Stopped, s.clock.Now())
	}
	s.dropInstanceLocked(b, inst, exited)
}

// dropInstanceLocked is retireLocked but for b's state, which the caller
// sets (a wake that failed keeps b starting).
func (s *Swapper) dropInstanceLocked(b *backend, inst *instance, exited uint64) {
	if b.cur == inst && s.opts.Memory != nil && s.snap.look <= exited {
		mram, mvram, nram, nvram := s.snap.counts(inst)
		s.unseen = append(s.unseen, unseenFree{ram: max(mram, nram), vram: max(mvram, nvram), gpu: inst.gpu, mark: exited})
	}
	if b.cur == inst {
		b.cur = nil
		s.lru.Remove(b.model.ID)
		s.changedLocked(b)
	}
	if inst.idle != nil {
		close(inst.idle)
		inst.idle = nil
	}
	// A crash and a stop may both retire an instance: its port is given
	// back once, not again after a new instance has taken it.
	if !isClosed(inst.gone) {
		s.ports.Release(inst.port)
		close(inst.gone)
	}
}

// watch notices a backend that dies: its process exits on its own, or it
// is found with nothing listening on its port while its process (a
// wrapper script, say) lives on (see unreachable). Either is a crash: the
// process group is stopped, the instance retired, and the next request
// starts the model again. A start in progress sees its own process exit
// (the readiness wait ends); a stop owns the exit it causes.
func (s *Swapper) watch(b *backend, inst *instance) {
	defer s.wg.Done()
	select {
	case <-inst.proc.Done():
	case <-inst.dead:
	}
	s.mu.Lock()
	// unreachable moved it to Stopping on purpose: that stop is this one.
	dead := inst.deadErr
	if b.cur != inst || dead == nil && (b.state == Stopping || b.state == Starting) {
		s.unlock()
		return
	}
	s.unlock()
	if dead != nil {
		// A server that exits is refused connections a moment before its
		// exit is seen: give the exit that moment, so that the crash says
		// how it died.
		t := time.NewTimer(exitGrace)
		select {
		case <-inst.proc.Done():
		case <-t.C:
		}
		t.Stop()
	}
	log := s.log.With(zap.String("model", b.model.ID), zap.Int("pid", inst.proc.Pid()))
	if dead != nil && !isClosed(inst.proc.Done()) {
		log.Error("backend stopped answering; stopping it as crashed", zap.Error(dead),
			zap.Strings("output", inst.proc.Tail()))
		s.opts.Events.Publish(events.Event{Type: events.Crash, Model: b.model.ID, Message: stoppedAnswering(dead),
			Data: map[string]any{"pid": inst.proc.Pid()}})
		inst.proc.Stop(b.model.StopTimeout)
	} else {
		log.Error("backend exited unexpectedly", zap.NamedError("exit", inst.proc.ExitErr()),
			zap.Strings("output", inst.proc.Tail()))
		s.opts.Events.Publish(events.Event{Type: events.Crash, Model: b.model.ID,
			Data: map[string]any{"exit": process.DescribeExit(inst.proc.ExitErr())}})
		if len(b.model.Stop) > 0 {
			// What the process ran may outlive it (a container whose
			// client died): its stop command is run all the same.
			inst.proc.Stop(b.model.StopTimeout)
		}
	}
	s.retire(b, inst)
}

// exitGrace is how long a backend found dead is given to be seen exiting
// (see watch).
const exitGrace = 50 * time.Millisecond

// janitor unloads models that have been idle for their ttl, and looks
// for idle backends that stopped answering (see checkIdle).
func (s *Swapper) janitor() {
	defer s.wg.Done()
	for {
		if !sleep(s, s.opts.TTLInterval) {
			return
		}
		now := s.clock.Now()
		s.mu.Lock()
		for _, b := range s.backends {
			if b.state == Ready && b.stale {
				s.restartIfIdleLocked(b)
				continue
			}
			idle, ok := b.idleLimit()
			if !ok || b.pinned || now.Sub(b.lastUsed) < idle {
				continue
			}
			switch {
			case b.state == Ready && b.cur.inflight == 0:
				s.expireLocked(b, idle)
			case b.state == Asleep:
				// Asleep, it still holds memory: its ttl ends that too.
				s.publish(events.Event{Type: events.Evict, Model: b.model.ID, Data: map[string]any{"reason": "ttl", "asleep": true}})
				s.stopAsleepLocked(b, "idle for its ttl ("+idle.String()+"), asleep")
			}
		}
		s.unlock()
		s.checkIdle(now)
	}
}

// shutdown stops b as hotswap closes: its requests in flight may finish
// until ctx ends, then it is stopped under them.
func (s *Swapper) shutdown(ctx context.Context, b *backend) {
	s.mu.Lock()
	inst := b.cur
	if inst == nil {
		s.unlock()
		return
	}
	if b.state == Ready {
		b.enter(Draining, s.clock.Now())
		s.changedLocked(b)
	}
	waitIdleLocked[struct{}](s, inst, nil, ctx.Done())
	if inst.inflight > 0 {
		inst.cause = ErrClosed
	}
	if b.cur == inst && b.state != Stopping {
		b.enter(Stopping, s.clock.Now())
		s.changedLocked(b)
	}
	s.unlock()
	if f := s.opts.BeforeStop; f != nil {
		f(b.model.ID, inst.id)
	}
	inst.proc.Stop(b.model.StopTimeout)
	s.mu.Lock()
	s.retireLocked(b, inst, s.looks)
	s.settledLocked(b)
	s.unlock()
}

// waitIdleLocked lets go of the lock while inst has requests in flight,
// until they are done, inst is gone, or timeout or cut fires. The lock is
// held again when it returns.
func waitIdleLocked[T any](s *Swapper, inst *instance, timeout <-chan T, cut <-chan struct{}) {
	for inst.inflight > 0 && !isClosed(inst.gone) {
		if inst.idle == nil {
			inst.idle = make(chan struct{})
		}
		idle := inst.idle
		s.unlock()
		select {
		case <-idle:
		case <-inst.gone:
		case <-timeout:
			s.mu.Lock()
			return
		case <-cut:
			s.mu.Lock()
			return
		}
		s.mu.Lock()
	}
}
