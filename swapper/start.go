package swapper

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/probe"
)

// beginStartLocked moves b to Starting and starts it in the background.
func (s *Swapper) beginStartLocked(b *backend) {
	a := &attempt{done: make(chan struct{})}
	b.state = Starting
	b.start = a
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		inst, err := s.run(b)
		s.mu.Lock()
		defer s.mu.Unlock()
		b.start = nil
		b.pending = nil
		if err == nil && s.closed {
			// Close did not see this instance: it must not outlive us.
			s.mu.Unlock()
			inst.proc.Stop(b.model.StopTimeout)
			s.ports.release(inst.port)
			s.mu.Lock()
			inst, err = nil, ErrClosed
		}
		if err != nil {
			b.state = Stopped
			a.err = s.failedLocked(b, err)
			close(a.done)
			return
		}
		b.state = Ready
		b.cur = inst
		b.failures = 0
		b.lastUsed = time.Now()
		s.lru.Add(b.model.ID, struct{}{})
		close(a.done)
		s.wg.Add(1)
		go s.watch(b, inst)
	}()
}

// failedLocked records a failed start and returns what its waiters get.
// Failures of the backend itself start a back-off; a lack of memory or a
// shutdown do not, since nothing is wrong with the backend.
func (s *Swapper) failedLocked(b *backend, err error) error {
	var ie *InsufficientMemoryError
	if errors.As(err, &ie) || errors.Is(err, ErrClosed) || s.ctx.Err() != nil {
		return err
	}
	se := asStartError(b.model.ID, err)
	b.failures++
	backoff := s.opts.BackoffBase << (b.failures - 1)
	if backoff > s.opts.BackoffMax || backoff <= 0 {
		backoff = s.opts.BackoffMax
	}
	b.retryAt = time.Now().Add(backoff)
	se.RetryAt = b.retryAt
	b.lastErr = se
	return se
}

func asStartError(model string, err error) *StartError {
	var se *StartError
	if errors.As(err, &se) {
		return se
	}
	return &StartError{Model: model, Err: err}
}

// run makes room for b, starts its process and waits until it is healthy.
// A backend that runs out of memory while loading next to other models
// was short of memory the probe did not see (a driver's own allocations,
// a context larger than declared): it is tried once more after every idle
// model has been stopped. A backend that exits for any other reason is
// not, and the other models keep running (see outOfMemory).
func (s *Swapper) run(b *backend) (*instance, error) {
	inst, resident, err := s.spawn(b, false)
	if err != nil {
		return nil, err
	}
	err = s.await(b, inst)
	var se *StartError
	if errors.As(err, &se) && se.OutOfMemory && resident > 0 && s.ctx.Err() == nil {
		s.log.Warn("backend ran out of memory while loading next to other models; stopping idle models and retrying once",
			zap.String("model", b.model.ID), zap.Int("resident", resident), zap.Error(err))
		if inst, _, err = s.spawn(b, true); err != nil {
			return nil, err
		}
		err = s.await(b, inst)
	}
	if err != nil {
		return nil, err
	}
	s.measure(b, inst)
	return inst, nil
}

// spawn makes room and starts b's process. It returns how many other
// models were loaded when it started. With evictIdle, every idle model
// that may be stopped is stopped first, whatever the plan says.
func (s *Swapper) spawn(b *backend, evictIdle bool) (*instance, int, error) {
	gpu, err := s.claim(b, evictIdle)
	if err != nil {
		return nil, 0, err
	}
	defer func() { <-s.swap }()

	m := b.model
	port := 0
	if m.NeedsPort() {
		if port, err = s.ports.acquire(); err != nil {
			return nil, 0, err
		}
	}
	argv, env, upstream := m.Expand(port)
	if gpu != ramDevice && m.GPU == config.NoGPU && !hasEnv(env, "CUDA_VISIBLE_DEVICES") {
		env = append(env, "CUDA_VISIBLE_DEVICES="+strconv.Itoa(gpu))
	}
	out := s.log.Named("backend").With(zap.String("model", m.ID))
	s.log.Info("starting backend", zap.String("model", m.ID), zap.Strings("argv", argv),
		zap.Int("port", port), zap.String("device", deviceName(gpu)))
	proc, err := s.opts.Starter.Start(ProcessSpec{
		Argv:   argv,
		Env:    env,
		Output: func(line string) { out.Info(line) },
	})
	if err != nil {
		s.ports.release(port)
		return nil, 0, err
	}
	inst := &instance{
		id:       s.nextInstanceID(),
		proc:     proc,
		port:     port,
		upstream: upstream,
		started:  time.Now(),
		gone:     make(chan struct{}),
		gpu:      gpu,
		need:     s.need(b),
	}
	s.mu.Lock()
	b.pending = inst
	resident := 0
	for _, o := range s.backends {
		if o != b && o.cur != nil {
			resident++
		}
	}
	s.mu.Unlock()
	return inst, resident, nil
}

// claim takes the swap semaphore and makes room for b, returning the GPU
// to place it on. On success the semaphore is still held, for the caller to
// start the process before anyone else plans.
func (s *Swapper) claim(b *backend, evictIdle bool) (int, error) {
	for {
		select {
		case s.swap <- struct{}{}:
		case <-s.ctx.Done():
			return ramDevice, ErrClosed
		}
		if evictIdle {
			for _, v := range s.idleOthers(b) {
				s.stop(v, "retrying "+b.model.ID+" with more memory", nil)
			}
		}
		gpu, err := s.makeRoom(b)
		if err == nil && s.ctx.Err() != nil {
			err = ErrClosed
		}
		if err == nil {
			return gpu, nil
		}
		<-s.swap
		// Another model still loading may be what is in the way: once it
		// is ready it can be stopped like any other, so wait for it
		// (without holding up other starts) and plan again.
		var ie *InsufficientMemoryError
		loading := s.otherStart(b)
		if !errors.As(err, &ie) || loading == nil {
			return ramDevice, err
		}
		s.log.Info("waiting for another start before planning again",
			zap.String("model", b.model.ID), zap.Error(err))
		select {
		case <-loading:
		case <-s.ctx.Done():
		}
	}
}

// otherStart returns the done channel of a start of another model whose
// process is running, or nil if there is none.
func (s *Swapper) otherStart(b *backend) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.backends {
		if o != b && o.state == Starting && o.pending != nil {
			return o.start.done
		}
	}
	return nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// await waits until inst is healthy, stopping it if it never gets there.
func (s *Swapper) await(b *backend, inst *instance) error {
	m := b.model
	err := s.opts.Readiness.Wait(s.ctx, inst.upstream+m.Health, probe.WaitOptions{
		Timeout:      m.HealthTimeout,
		LastActivity: inst.proc.LastOutput,
		Wake:         inst.proc.Wrote(),
		Exited:       inst.proc.Done(),
	})
	if err == nil {
		s.log.Info("backend ready", zap.String("model", m.ID), zap.Int("pid", inst.proc.Pid()),
			zap.Duration("took", time.Since(inst.started)))
		return nil
	}
	inst.proc.Stop(m.StopTimeout)
	s.ports.release(inst.port)
	s.mu.Lock()
	if b.pending == inst { // its reservation goes with it
		b.pending = nil
	}
	s.mu.Unlock()
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	se := &StartError{Model: m.ID, Err: err, Output: inst.proc.Tail()}
	if errors.Is(err, probe.ErrExited) {
		exit := inst.proc.ExitErr()
		se.OutOfMemory = outOfMemory(exit, se.Output)
		why := describeExit(exit)
		if se.OutOfMemory {
			why += ", out of memory"
		}
		se.Err = fmt.Errorf("%w (%s)", err, why)
	}
	s.log.Error("backend failed to start", zap.String("model", m.ID), zap.Error(se.Err),
		zap.Strings("output", se.Output))
	return se
}

// nextInstanceID is unique within the swapper; guarded by swap.
func (s *Swapper) nextInstanceID() uint64 {
	s.instances++
	return s.instances
}
