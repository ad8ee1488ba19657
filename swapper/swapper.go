// Package swapper owns the lifecycle of backend processes: it starts a
// model's backend when a request needs it, makes room by stopping others,
// notices crashes, and stops everything on the way out.
//
// Acquire is the one way in: it returns a Lease once the model's backend is
// ready, and the backend is never stopped while a lease on it is held.
// Starts are single-flight: every caller that needs a model while it is
// loading joins that load.
package swapper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/probe"
)

// State is where a model's backend is in its life.
type State int

const (
	Stopped  State = iota
	Starting       // process started, not yet healthy
	Ready          // serving
	Draining       // finishing in-flight requests before a stop; takes no new ones
	Stopping       // being signalled to exit
)

func (s State) String() string {
	switch s {
	case Stopped:
		return "stopped"
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Draining:
		return "draining"
	case Stopping:
		return "stopping"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Options configure a Swapper.
type Options struct {
	// Models are the models it may run, keyed by id.
	Models map[string]*config.Model
	Ports  config.PortRange
	// Starter starts processes; nil means an ExecStarter.
	Starter Starter
	// Readiness checks backends' health; nil means a default one.
	Readiness *probe.Readiness
	Log       *zap.Logger
	// BackoffBase is how long a model whose start failed is refused; it
	// doubles with each further failure up to BackoffMax. Defaults 10s, 5m.
	BackoffBase, BackoffMax time.Duration
}

// Swapper runs backends. Create it with New and stop it with Close.
type Swapper struct {
	opts  Options
	log   *zap.Logger
	ports *ports

	// ctx outlives any one request: a start that a client triggered goes
	// on when that client leaves, since others usually wait for the same
	// model. It ends with Close.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// swap serialises making room and starting, so that two starts never
	// pick the same victims or overcommit what they free.
	swap chan struct{}

	mu       sync.Mutex
	closed   bool
	backends map[string]*backend

	instances uint64 // last instance id handed out; guarded by swap
}

// backend is one model's slot: at most one running instance at a time.
type backend struct {
	model *config.Model
	state State
	cur   *instance // set in Ready, Draining and Stopping
	start *attempt  // set in Starting

	lastUsed time.Time
	failures int
	retryAt  time.Time
	lastErr  *StartError
}

// instance is one run of a backend process.
type instance struct {
	id       uint64
	proc     Process
	port     int
	upstream string
	started  time.Time
	inflight int
	// idle is closed when inflight drops to zero while someone waits for
	// it (a drain).
	idle chan struct{}
	// gone is closed when the instance has stopped, for whatever reason.
	gone chan struct{}
}

// attempt is one start, joined by every caller that needs the model while
// it runs.
type attempt struct {
	done chan struct{}
	err  error
}

// New returns a Swapper for opts.Models. Nothing is started.
func New(opts Options) *Swapper {
	if opts.Starter == nil {
		opts.Starter = &ExecStarter{}
	}
	if opts.Readiness == nil {
		opts.Readiness = &probe.Readiness{}
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 10 * time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 5 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Swapper{
		opts:     opts,
		log:      opts.Log,
		ports:    newPorts(opts.Ports.First, opts.Ports.Last),
		ctx:      ctx,
		cancel:   cancel,
		swap:     make(chan struct{}, 1),
		backends: make(map[string]*backend, len(opts.Models)),
	}
	for id, m := range opts.Models {
		s.backends[id] = &backend{model: m}
	}
	return s
}

// Lease holds a ready backend against being stopped until Release.
type Lease struct {
	s     *Swapper
	b     *backend
	inst  *instance
	once  sync.Once
	model string
}

// Model is the model id the lease is for.
func (l *Lease) Model() string { return l.model }

// Upstream is the backend's base URL, without a trailing slash.
func (l *Lease) Upstream() string { return l.inst.upstream }

// Instance identifies this run of the backend: it changes whenever the
// backend is restarted, so that callers can drop connections to the old one.
func (l *Lease) Instance() uint64 { return l.inst.id }

// Gone is closed when the backend instance has stopped or died.
func (l *Lease) Gone() <-chan struct{} { return l.inst.gone }

// Release gives the lease back. It is safe to call more than once.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.s.mu.Lock()
		defer l.s.mu.Unlock()
		l.inst.inflight--
		l.b.lastUsed = time.Now()
		if l.inst.inflight == 0 && l.inst.idle != nil {
			close(l.inst.idle)
			l.inst.idle = nil
		}
	})
}

// Acquire returns once model's backend is ready, starting it if needed,
// and holds it until the lease is released. ctx bounds only this caller's
// wait: a start it triggered goes on for the others.
func (s *Swapper) Acquire(ctx context.Context, model string) (*Lease, error) {
	s.mu.Lock()
	b, ok := s.backends[model]
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrUnknownModel, model)
	}
	for {
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		var wait <-chan struct{}
		var joined *attempt
		switch b.state {
		case Ready:
			b.cur.inflight++
			b.lastUsed = time.Now()
			l := &Lease{s: s, b: b, inst: b.cur, model: model}
			s.mu.Unlock()
			return l, nil
		case Starting:
			joined = b.start
			wait = joined.done
		case Draining, Stopping:
			wait = b.cur.gone
		case Stopped:
			if now := time.Now(); now.Before(b.retryAt) {
				err := &BackoffError{Model: model, RetryAt: b.retryAt, Last: b.lastErr}
				s.mu.Unlock()
				return nil, err
			}
			s.beginStartLocked(b)
			continue
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if joined != nil && joined.err != nil {
			return nil, joined.err
		}
		s.mu.Lock()
	}
}

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
			se := asStartError(b.model.ID, err)
			if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
				b.failures++
				backoff := s.opts.BackoffBase << (b.failures - 1)
				if backoff > s.opts.BackoffMax || backoff <= 0 {
					backoff = s.opts.BackoffMax
				}
				b.retryAt = time.Now().Add(backoff)
				se.RetryAt = b.retryAt
				b.lastErr = se
			}
			a.err = se
			close(a.done)
			return
		}
		b.state = Ready
		b.cur = inst
		b.failures = 0
		b.lastUsed = time.Now()
		close(a.done)
		s.wg.Add(1)
		go s.watch(b, inst)
	}()
}

func asStartError(model string, err error) *StartError {
	var se *StartError
	if errors.As(err, &se) {
		return se
	}
	return &StartError{Model: model, Err: err}
}

// run makes room for b, starts its process and waits until it is healthy.
func (s *Swapper) run(b *backend) (*instance, error) {
	select {
	case s.swap <- struct{}{}:
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
	defer func() { <-s.swap }()

	for _, v := range s.victims(b) {
		s.stop(v, "making room for "+b.model.ID)
	}
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}

	m := b.model
	port := 0
	if m.NeedsPort() {
		var err error
		if port, err = s.ports.acquire(); err != nil {
			return nil, err
		}
	}
	argv, env, upstream := m.Expand(port)
	log := s.log.With(zap.String("model", m.ID))
	out := s.log.Named("backend").With(zap.String("model", m.ID))
	begin := time.Now()
	log.Info("starting backend", zap.Strings("argv", argv), zap.Int("port", port))
	proc, err := s.opts.Starter.Start(ProcessSpec{
		Argv:   argv,
		Env:    env,
		Output: func(line string) { out.Info(line) },
	})
	if err != nil {
		s.ports.release(port)
		return nil, err
	}
	err = s.opts.Readiness.Wait(s.ctx, upstream+m.Health, probe.WaitOptions{
		Timeout:      m.HealthTimeout,
		LastActivity: proc.LastOutput,
		Wake:         proc.Wrote(),
		Exited:       proc.Done(),
	})
	if err != nil {
		proc.Stop(m.StopTimeout)
		s.ports.release(port)
		if errors.Is(err, probe.ErrExited) {
			err = fmt.Errorf("%w (%v)", err, proc.ExitErr())
		}
		se := &StartError{Model: m.ID, Err: err, Output: proc.Tail()}
		log.Error("backend failed to start", zap.Error(err), zap.Strings("output", se.Output))
		return nil, se
	}
	log.Info("backend ready", zap.Int("pid", proc.Pid()), zap.Duration("took", time.Since(begin)))
	return &instance{
		id:       nextInstanceID(s),
		proc:     proc,
		port:     port,
		upstream: upstream,
		started:  begin,
		gone:     make(chan struct{}),
	}, nil
}

// nextInstanceID is unique within the swapper; guarded by swap.
func nextInstanceID(s *Swapper) uint64 {
	s.instances++
	return s.instances
}

// victims are the backends to stop before b can start. This first version
// runs one model at a time: everything else that is loaded goes.
func (s *Swapper) victims(b *backend) []*backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*backend
	for _, o := range s.backends {
		if o != b && o.cur != nil {
			out = append(out, o)
		}
	}
	return out
}

// watch notices a backend that exits on its own.
func (s *Swapper) watch(b *backend, inst *instance) {
	defer s.wg.Done()
	<-inst.proc.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.cur != inst || b.state == Stopping {
		return // stop() owns this exit
	}
	s.log.Error("backend exited unexpectedly",
		zap.String("model", b.model.ID),
		zap.Int("pid", inst.proc.Pid()),
		zap.NamedError("exit", inst.proc.ExitErr()),
		zap.Strings("output", inst.proc.Tail()))
	s.retireLocked(b, inst)
}

// retireLocked marks inst as gone.
func (s *Swapper) retireLocked(b *backend, inst *instance) {
	b.state = Stopped
	b.cur = nil
	s.ports.release(inst.port)
	if inst.idle != nil {
		close(inst.idle)
		inst.idle = nil
	}
	close(inst.gone)
}

// stop drains b (no new leases; in-flight ones finish) and stops its
// process. It returns once the process has exited.
func (s *Swapper) stop(b *backend, reason string) {
	s.mu.Lock()
	inst := b.cur
	if inst == nil || b.state != Ready {
		s.mu.Unlock()
		if inst != nil {
			<-inst.gone // someone else is stopping it
		}
		return
	}
	b.state = Draining
	log := s.log.With(zap.String("model", b.model.ID), zap.String("reason", reason))
	for inst.inflight > 0 {
		if inst.idle == nil {
			inst.idle = make(chan struct{})
		}
		idle := inst.idle
		log.Info("draining backend", zap.Int("in_flight", inst.inflight))
		s.mu.Unlock()
		select {
		case <-idle:
		case <-inst.gone:
		}
		s.mu.Lock()
	}
	if b.cur != inst { // it died while draining
		s.mu.Unlock()
		return
	}
	b.state = Stopping
	s.mu.Unlock()

	begin := time.Now()
	inst.proc.Stop(b.model.StopTimeout)
	log.Info("backend stopped", zap.Duration("took", time.Since(begin)))

	s.mu.Lock()
	s.retireLocked(b, inst)
	s.mu.Unlock()
}

// Status describes one model for the API and logs.
type Status struct {
	Model    string
	State    State
	Pid      int
	Upstream string
	InFlight int
	LastUsed time.Time
	RetryAt  time.Time
}

// Status reports model's state now.
func (s *Swapper) Status(model string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.backends[model]
	if !ok {
		return Status{}, false
	}
	st := Status{Model: model, State: b.state, LastUsed: b.lastUsed}
	if b.state == Stopped && time.Now().Before(b.retryAt) {
		st.RetryAt = b.retryAt
	}
	if b.cur != nil {
		st.Pid = b.cur.proc.Pid()
		st.Upstream = b.cur.upstream
		st.InFlight = b.cur.inflight
	}
	return st, true
}

// Close stops every backend, waiting up to ctx for in-flight requests to
// finish first, and returns once all processes have exited. Starts in
// progress are abandoned and their processes stopped.
func (s *Swapper) Close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	var loaded []*backend
	for _, b := range s.backends {
		if b.cur != nil {
			loaded = append(loaded, b)
		}
	}
	s.mu.Unlock()
	s.cancel()

	var wg sync.WaitGroup
	for _, b := range loaded {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.shutdown(ctx, b)
		}()
	}
	wg.Wait()
	s.wg.Wait()
	// Every backend is gone, so ending the thread that started them (and
	// with it their death signal) harms none.
	if c, ok := s.opts.Starter.(io.Closer); ok {
		c.Close()
	}
}

// shutdown stops b, cutting its drain short when ctx ends.
func (s *Swapper) shutdown(ctx context.Context, b *backend) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.stop(b, "shutdown")
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	// Requests are still in flight: stop the process under them.
	s.mu.Lock()
	inst := b.cur
	s.mu.Unlock()
	if inst != nil {
		inst.proc.Stop(b.model.StopTimeout)
	}
	<-done
}
