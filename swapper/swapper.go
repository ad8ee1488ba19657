// Package swapper owns the lifecycle of backend processes: which models
// are loaded, which start and which make room for them. It decides, and
// has its decisions carried out by package process, which starts, guards
// and stops the processes (process.Starter, process.Process) and hands out
// their ports (process.Ports).
//
// It is the one owner of those decisions. Start decides, once, how a model
// comes in: on its own, or in place of the models it names (decide.go),
// from a snapshot of memory and backends kept in memory (account.go), with
// a pure planner (plan.go). The decision is committed at once, under the
// lock: the victims take no new requests and the memory is reserved, so
// that no other decision counts it twice. Then the machinery carries out
// exactly that decision, with no lock held across a wait (run.go): the
// victims drain and stop, in parallel (leave.go), the memory is awaited,
// the process is started (through Options.Starter) and awaited. When the
// world changes on the way (a crash, memory that does not come back, a
// backend that ran out of memory) the machinery says so and the owner
// decides again.
//
// Memory reaches the owner as events (a start, a backend ready, an exit)
// and as a periodic refresh (refresh.go); nothing under the lock reads
// the probe.
//
// Callers lease ready backends with TryLease, which never waits, or with
// Acquire, which starts the model if it must and waits for it. A backend
// is never stopped under a lease, except past the drain timeout.
package swapper

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/process"
	"github.com/hotswap/hotswap/state"
)

// State is where a model's backend is in its life.
type State int

const (
	Stopped  State = iota
	Starting       // decided: making room, or loading
	Ready          // serving
	Draining       // leaving: finishing in-flight requests, taking no new ones
	Stopping       // being signalled to exit
	Sleeping       // drained, being put to sleep (see sleep.go)
	Asleep         // its process runs, holding what it keeps asleep; woken by a start
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
	case Sleeping:
		return "sleeping"
	case Asleep:
		return "asleep"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Options configure a Swapper.
type Options struct {
	// Models are the models it may run, keyed by id.
	Models map[string]*config.Model
	Ports  config.PortRange
	// Starter starts processes; nil means a process.ExecStarter.
	Starter process.Starter
	// Readiness checks backends' health; nil means a default one.
	Readiness *probe.Readiness
	Log       *zap.Logger
	// Clock is the time drains, cool-downs, back-offs and TTLs go by; nil
	// is the real clock.
	Clock clock.Clock
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
	// DrainTimeout bounds the wait for a leaving backend's requests to
	// finish; past it, the backend is stopped under them (they get
	// ErrDrainTimeout). Default 5m.
	DrainTimeout time.Duration
	// Eviction is how victims are chosen when memory is short:
	// config.EvictLRU (also "") or config.EvictCost (see choosePlan).
	Eviction string
	// Footprints is where measured footprints are learned (the state
	// file); nil keeps them in memory.
	Footprints *state.File
	// Events, if set, is told what the swapper does: starts decided,
	// evictions and why, backends ready, stopped, crashed, refusals.
	Events *events.Hub
	// RefreshInterval is how often memory is looked at again (default 1s;
	// also at every start, ready backend and exit), MeasureInterval how
	// often a ready backend is measured (default 5s; a loading one, at
	// every refresh) and an idle one's port is connected to (see
	// checkIdle), TTLInterval how often idle backends are checked against
	// their ttl (default 1s).
	RefreshInterval, MeasureInterval, TTLInterval time.Duration
	// BeforeStop, if set, is called once a leaving backend instance is
	// drained, right before its process is stopped, with no lock held:
	// the proxy closes its idle connections to it there, since a server
	// such as llama-server waits on them before it exits on SIGTERM.
	BeforeStop func(model string, instance uint64)
}

// Swapper runs backends. Create it with New and stop it with Close.
type Swapper struct {
	opts  Options
	log   *zap.Logger
	clock clock.Clock
	ports *process.Ports

	// ctx outlives any one request: a start a client asked for goes on
	// when that client leaves, since others usually wait for the same
	// model. It ends with Close.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards everything below, and is never held across a wait.
	mu       sync.Mutex
	closed   bool
	backends map[string]*backend
	// lru orders loaded models, least recently used first.
	lru *simplelru.LRU[string, struct{}]
	// snap is memory as last measured.
	snap snapshot
	// changed is closed and replaced whenever anything changes: a waiter
	// that cannot tell what it waits for waits on it.
	changed chan struct{}
	// notes are the models whose change the watchers have yet to be
	// told; noted wakes the notifier that tells them.
	notes     []string
	noted     chan struct{}
	watchers  []func(model string)
	instances uint64 // last instance id handed out
	looks     uint64 // looks at memory begun (see refresh)
	// fx is what decisions made under the lock have to say once it is
	// let go (see unlock).
	fx effects
	// unseen is the memory of backends stopped since the snapshot's look
	// began: the snapshot still counts it as used, by no backend hotswap
	// knows. It is in transit until a look sees it free (see retireLocked).
	unseen []unseenFree
	// spawning counts processes being started, spawnGen every start and
	// end of one: a look at memory during one is not used (see refresh).
	spawning int
	spawnGen uint64

	// est holds footprints estimated from model files (see estimate.go);
	// it has its own lock.
	est estimates
	// calls makes the HTTP requests that put backends to sleep and wake
	// them (see sleep.go): straight to the backend, never through a proxy.
	calls *http.Client
}

// backend is one model's slot: at most one running instance at a time.
type backend struct {
	model *config.Model
	state State
	// start is the decision being carried out, while Starting.
	start *decision
	// cur is the running process: set once a start has spawned it, and
	// through Ready, Draining and Stopping.
	cur *instance
	// changed is closed and replaced whenever state changes.
	changed chan struct{}

	// since is when it entered state.
	since    time.Time
	lastUsed time.Time
	failures int
	retryAt  time.Time
	lastErr  *StartError

	// ttl and pinned are the model's, changed at once by a reload; the
	// rest of model is fixed for the backend's life (see Reconfigure).
	ttl    time.Duration
	pinned bool
	// sleep is how it is put to sleep and woken (nil: it cannot be), the
	// model's, changed at once by a reload.
	sleep *config.Sleep
	// keep is what the last request to give the backend back said of how
	// long it stays loaded (Ollama's keep_alive), over ttl until the next
	// request ends.
	keep keepAlive
	// startTook is how long its last start took, process start to ready:
	// what the next start is expected to take.
	startTook time.Duration
	// wakeTook is how long its last wake took, the wake call to ready:
	// what the next is expected to take.
	wakeTook time.Duration
	// ahead is how far reading its weight files ahead has gone, for its
	// current or last start (see readAhead) or, before a start was
	// decided, for requests queued for it (see Prefetch).
	ahead ReadAhead
	// prefetch is the read-ahead for requests queued for it while it is
	// stopped, while one runs (see Prefetch); aheadDone is closed once
	// the last read-ahead begun for it, of either kind, has ended (see
	// chainAheadLocked).
	prefetch  *prefetch
	aheadDone chan struct{}
	// freq counts the requests it served, each worth half as much every
	// freqHalfLife since: the count as of freqSet (see bumpFreq).
	freq    float64
	freqSet time.Time
	// next, when set, is the model's new configuration: it takes effect
	// once the backend has stopped. stale says the backend runs with a
	// configuration that needs a restart: it leaves once idle, and
	// restart (set when it leaves for that) starts it again then.
	next    *config.Model
	stale   bool
	restart bool
}

// instance is one run of a backend process.
type instance struct {
	id       uint64
	proc     process.Process
	port     int
	upstream string
	started  time.Time
	readyAt  time.Time
	inflight int
	// idle is closed when inflight drops to zero while a drain waits.
	idle chan struct{}
	// gone is closed when the instance has stopped, for whatever reason.
	gone chan struct{}
	// cause says why it was stopped on purpose under requests (the drain
	// timeout, shutdown), for the requests that were cut.
	cause error
	// cut, once closed, ends its drain at once (a forced unload).
	cut chan struct{}
	// dead is closed when the backend is found with nothing listening on
	// its port, deadErr saying how (see unreachable): its watch then
	// stops it as crashed, though its process may still run.
	dead    chan struct{}
	deadErr error
	// addr is the host:port of upstream, which the idle check connects
	// to; checkedAt when it last did.
	addr      string
	checkedAt time.Time

	gpu  int         // the GPU it was placed on, or ramDevice
	need config.Need // what planning counts for it
	// asleep is closed once a sleep decided for it is done (it sleeps, or
	// failed to and is stopped: gone closes then); nil when none is. keep
	// is what it is planned to hold asleep. noSleep: a sleep of this run
	// failed, so it is stopped from now on.
	asleep  chan struct{}
	keep    config.Need
	noSleep bool
	// usage is its last measurement (zero until measured).
	usage      probe.Usage
	measured   bool
	measuredAt time.Time
	look       uint64 // the look it was measured in (see refresh)
	// cgroupWarned: its model's cgroup was found missing once it was
	// ready, and that was logged (see measureInstance).
	cgroupWarned atomic.Bool
}

// New returns a Swapper for opts.Models. Nothing is started; memory is
// looked at once, so that the first decisions have numbers to go by.
func New(opts Options) *Swapper {
	if opts.Starter == nil {
		opts.Starter = &process.ExecStarter{}
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
		opts.DrainTimeout = config.DefaultDrainTimeout
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = time.Second
	}
	if opts.MeasureInterval <= 0 {
		opts.MeasureInterval = 5 * time.Second
	}
	if opts.TTLInterval <= 0 {
		opts.TTLInterval = time.Second
	}
	if opts.Footprints == nil {
		opts.Footprints, _ = state.Open("")
	}
	lru, _ := simplelru.NewLRU[string, struct{}](max(1, len(opts.Models)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Swapper{
		opts:     opts,
		log:      opts.Log,
		clock:    clock.Or(opts.Clock),
		ports:    process.NewPorts(opts.Ports.First, opts.Ports.Last),
		ctx:      ctx,
		cancel:   cancel,
		backends: make(map[string]*backend, len(opts.Models)),
		lru:      lru,
		changed:  make(chan struct{}),
		noted:    make(chan struct{}, 1),
		calls:    &http.Client{Transport: &http.Transport{Proxy: nil}},
	}
	s.estimateAll(opts.Models)
	for id, m := range opts.Models {
		s.backends[id] = newBackend(m)
	}
	s.refresh()
	s.wg.Add(3)
	go s.refresher()
	go s.janitor()
	go s.notifier()
	return s
}

// Watch has f called whenever a model's backend changes state, with the
// model's id, and with "" when memory was looked at again: whoever waits
// to decide something looks again. f is called on a goroutine of the
// swapper's own, one call at a time, never with a lock held, so it may
// call the swapper (and a caller of the swapper holding its own lock is
// never re-entered).
func (s *Swapper) Watch(f func(model string)) {
	s.mu.Lock()
	defer s.unlock()
	s.watchers = append(s.watchers, f)
}

// changedLocked records that b changed: its waiters wake, and the
// watchers are told (see notifier). b nil means memory changed.
func (s *Swapper) changedLocked(b *backend) {
	close(s.changed)
	s.changed = make(chan struct{})
	id := ""
	if b != nil {
		close(b.changed)
		b.changed = make(chan struct{})
		id = b.model.ID
	}
	if len(s.watchers) > 0 && !slices.Contains(s.notes, id) {
		s.notes = append(s.notes, id)
		select {
		case s.noted <- struct{}{}:
		default:
		}
	}
}

// notifier tells the watchers of changes, in the order they were noted.
func (s *Swapper) notifier() {
	defer s.wg.Done()
	for {
		select {
		case <-s.noted:
		case <-s.ctx.Done():
			return
		}
		s.mu.Lock()
		notes, watchers := s.notes, s.watchers
		s.notes = nil
		s.unlock()
		for _, id := range notes {
			for _, f := range watchers {
				f(id)
			}
		}
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
	// Started is when its process started, ReadyAt when it was seen
	// ready (zero until then).
	Started, ReadyAt time.Time
	// Port is the port it was given (0 if none); LastUsed when a request
	// last took or gave back its backend.
	Port     int
	LastUsed time.Time
	// Since is when it entered State (zero if it never left Stopped).
	Since time.Time
	// RetryAt is when a model whose last start failed may be started
	// again, LastError why it failed; zero and nil once it started.
	RetryAt   time.Time
	LastError error
	// ExpiresAt is when it leaves if no request comes, for its ttl or the
	// keep_alive its last request gave; zero if it stays. StartTook is how
	// long its last start took (zero before the first).
	ExpiresAt time.Time
	StartTook time.Duration
	// ReadAhead is how far its weight files were last read ahead: for
	// its current or last start, or for requests queued for it before
	// its start was decided; zero if none were.
	ReadAhead ReadAhead
	// Waking says its start is a wake (it was asleep); WakeTook is how
	// long its last wake took. AsleepNeed is what it is planned to hold
	// asleep, for a model that can sleep (see asleepNeed).
	Waking     bool
	WakeTook   time.Duration
	AsleepNeed config.Need
}

// ReadAhead is the progress of reading a model's weight files into the
// page cache while its start waits, or while requests queued for it wait
// for its start to be decided (Queued; see Prefetch).
type ReadAhead struct {
	Bytes, Total int64 // read so far, of what there is to read (within the budget's reach)
	Done         bool
	Queued       bool
}

// enter moves b to st.
func (b *backend) enter(st State, now time.Time) {
	b.state, b.since = st, now
}

// Status reports model's state now.
func (s *Swapper) Status(model string) (Status, bool) {
	s.mu.Lock()
	defer s.unlock()
	b, ok := s.backends[model]
	if !ok {
		return Status{}, false
	}
	st := Status{Model: model, State: b.state, Need: s.need(b), LastUsed: b.lastUsed, Since: b.since,
		RetryAt: b.retryAt, StartTook: b.startTook, ReadAhead: b.ahead, WakeTook: b.wakeTook}
	if b.sleep != nil {
		st.AsleepNeed = s.asleepNeed(b)
	}
	st.Waking = b.state == Starting && b.start != nil && b.start.wake
	if idle, ok := b.idleLimit(); ok && (b.state == Ready || b.state == Asleep) {
		st.ExpiresAt = b.lastUsed.Add(idle)
	}
	if b.lastErr != nil {
		st.LastError = b.lastErr
	}
	if b.cur != nil {
		st.Pid = b.cur.proc.Pid()
		st.Upstream = b.cur.upstream
		st.InFlight = b.cur.inflight
		st.Device = deviceName(b.cur.gpu)
		st.Usage = b.cur.usage
		st.Started, st.ReadyAt, st.Port = b.cur.started, b.cur.readyAt, b.cur.port
	}
	return st, true
}

// State reports model's state now; Stopped for a model it does not know.
func (s *Swapper) State(model string) State {
	s.mu.Lock()
	defer s.unlock()
	if b, ok := s.backends[model]; ok {
		return b.state
	}
	return Stopped
}

// Close stops every backend, waiting up to ctx for in-flight requests to
// finish first, and returns once all processes have exited. Starts in
// progress are abandoned and their processes stopped.
func (s *Swapper) Close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	var running []*backend
	for _, b := range s.backends {
		if b.cur != nil && b.state != Starting {
			running = append(running, b)
		}
	}
	s.changedLocked(nil)
	s.unlock()
	s.cancel() // starts in progress stop their processes

	var wg sync.WaitGroup
	for _, b := range running {
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

// nextInstanceIDLocked is unique within the swapper.
func (s *Swapper) nextInstanceIDLocked() uint64 {
	s.instances++
	return s.instances
}
