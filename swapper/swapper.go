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
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hashicorp/golang-lru/v2/simplelru"

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

	// Memory reports free memory and what backends use. nil turns memory
	// planning off: every model is taken to fit.
	Memory probe.Memory
	// ReserveRAM and ReserveVRAM (per GPU) are always left free.
	ReserveRAM, ReserveVRAM int64
	// LimitRAM, if > 0, caps the RAM all backends together may use.
	LimitRAM int64
	// CooldownMax bounds the wait for stopped backends' memory to show as
	// free again.
	CooldownMax time.Duration
	// DrainTimeout bounds the wait for a busy backend that must make room
	// to finish its requests; after it, the backend is stopped anyway.
	// Default 5m.
	DrainTimeout time.Duration
	// Footprints remembers measured footprints; nil keeps them in memory.
	Footprints *Footprints
	// MeasureInterval is how often a running backend's memory is measured
	// (default 5s); TTLInterval how often idle backends are checked
	// against their ttl (default 1s).
	MeasureInterval, TTLInterval time.Duration
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
	// lru orders loaded models, least recently used first.
	lru *simplelru.LRU[string, struct{}]

	instances uint64 // last instance id handed out; guarded by swap
}

// backend is one model's slot: at most one running instance at a time.
type backend struct {
	model *config.Model
	state State
	cur   *instance // set in Ready, Draining and Stopping
	start *attempt  // set in Starting
	// pending is the instance being started, once its process runs: its
	// reservation keeps concurrent starts from counting the same memory.
	pending *instance

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

	gpu  int         // the GPU it was placed on, or ramDevice
	need config.Need // what planning assumed it needs
	// usage is its last measurement (zero until measured).
	usage    probe.Usage
	measured bool
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
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Minute
	}
	if opts.MeasureInterval <= 0 {
		opts.MeasureInterval = 5 * time.Second
	}
	if opts.TTLInterval <= 0 {
		opts.TTLInterval = time.Second
	}
	if opts.Footprints == nil {
		opts.Footprints, _ = LoadFootprints("")
	}
	lru, _ := simplelru.NewLRU[string, struct{}](max(1, len(opts.Models)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Swapper{
		opts:     opts,
		log:      opts.Log,
		ports:    newPorts(opts.Ports.First, opts.Ports.Last),
		ctx:      ctx,
		cancel:   cancel,
		swap:     make(chan struct{}, 1),
		backends: make(map[string]*backend, len(opts.Models)),
		lru:      lru,
	}
	for id, m := range opts.Models {
		s.backends[id] = &backend{model: m}
	}
	s.wg.Add(1)
	go s.janitor()
	return s
}

// Lease holds a ready backend against being stopped until Release.
type Lease struct {
	s    *Swapper
	b    *backend
	inst *instance
	once sync.Once
}

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
			s.lru.Add(model, struct{}{})
			l := &Lease{s: s, b: b, inst: b.cur}
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

// Status describes one model for the API and logs.
type Status struct {
	Model    string
	State    State
	Pid      int
	Upstream string
	InFlight int
	// Device is where its VRAM is ("gpu0", ...), or "ram".
	Device string
	// Need is what planning counts for it: its declaration raised to its
	// learned footprint. Usage is its last measurement.
	Need  config.Need
	Usage probe.Usage
}

// Status reports model's state now.
func (s *Swapper) Status(model string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.backends[model]
	if !ok {
		return Status{}, false
	}
	st := Status{Model: model, State: b.state, Need: s.need(b)}
	if b.cur != nil {
		st.Pid = b.cur.proc.Pid()
		st.Upstream = b.cur.upstream
		st.InFlight = b.cur.inflight
		st.Device = deviceName(b.cur.gpu)
		st.Usage = b.cur.usage
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
		s.stop(b, "shutdown", nil)
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

// State reports model's state now; Stopped for a model it does not know.
// It is the cheap question the router asks on every dispatch.
func (s *Swapper) State(model string) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.backends[model]; ok {
		return b.state
	}
	return Stopped
}

// Evictions reports which loaded models a start of model would stop if it
// began now, by the plan the start itself would make, without stopping
// anything. The router asks before it lets a start disturb busy models.
// It goes by the last measurements rather than taking new ones, and says
// ErrPlanPending while another start has yet to be placed.
func (s *Swapper) Evictions(model string) ([]string, error) {
	s.mu.Lock()
	b, ok := s.backends[model]
	unplaced := false
	for _, o := range s.backends {
		unplaced = unplaced || (o != b && o.state == Starting && o.pending == nil)
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownModel, model)
	}
	if s.opts.Memory == nil {
		return nil, nil
	}
	if unplaced {
		return nil, ErrPlanPending
	}
	in, err := s.planInput(b, false)
	if err != nil {
		return nil, err
	}
	p, err := choosePlan(in)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, v := range p.victims {
		out = append(out, v.model)
	}
	return out, nil
}
