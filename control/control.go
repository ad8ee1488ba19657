// Package control is what operators ask of hotswap: see what runs and the
// memory per device, load and unload models, switch to a mode (a named set
// of models) and back, reload the configuration. Every command that
// changes what runs goes through the router, the one door to the
// lifecycle's owner, as requests do: it follows the same memory rules, is
// decided on the state of the moment it is decided, and never races a
// swap.
//
// No lock is held across a wait. Each command is bound to its caller's
// context (an operator who hangs up stops waiting). A mode switch is a
// desired set with a generation: a newer switch (or restore) calls off the
// one in progress. A reload waits for nothing but its file, so it never
// waits behind a switch.
package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/state"
	"github.com/hotswap/hotswap/swapper"
)

// Lifecycle is what the controller reads of the swapper: it changes
// nothing there but through Door.
type Lifecycle interface {
	Statuses() []swapper.Status
	Memory(fresh bool) []swapper.DeviceReport
}

// Door is the router: the one way to the lifecycle's owner.
type Door interface {
	Load(ctx context.Context, model string, o router.LoadOptions) error
	Unload(ctx context.Context, model string, force bool) error
	Stats(model string) *router.Stats
	// Reconfigure and Remove are a reload's (see router.Reconfigure).
	Reconfigure(opts router.Options, models map[string]*config.Model, set swapper.Settings) map[string]<-chan struct{}
	Remove(ctx context.Context, model string) error
}

// ModeMemory is what a mode switch remembered: the mode now active, and
// the models that were loaded before the first switch since the last
// restore.
type ModeMemory struct {
	Active     string   `json:"active,omitempty"`
	Remembered []string `json:"remembered,omitempty"`
}

// ModeStore keeps what a mode switch remembered, across restarts.
type ModeStore interface {
	Mode() ModeMemory
	SetMode(ModeMemory) error
}

// StateModes keeps the mode memory in the state file, as a section of
// its own.
type StateModes struct{ File *state.File }

func (m StateModes) Mode() ModeMemory {
	var mm ModeMemory
	if _, err := m.File.Section(state.ModeSection, &mm); err != nil {
		return ModeMemory{} // unreadable: as if nothing was remembered
	}
	return mm
}

func (m StateModes) SetMode(mm ModeMemory) error {
	if mm.Active == "" && len(mm.Remembered) == 0 {
		return m.File.SetSection(state.ModeSection, nil)
	}
	return m.File.SetSection(state.ModeSection, mm)
}

// Learned is the memory of learned footprints (the state file).
type Learned interface {
	// Forget drops every footprint learned for model; it reports how
	// many there were.
	Forget(model string) (int, error)
}

// Options configure a Controller.
type Options struct {
	Config    *config.Config
	Lifecycle Lifecycle
	Door      Door
	Modes     ModeStore
	// Learned is where footprints are learned; nil: nothing to forget.
	Learned Learned
	Events  *events.Hub
	Log     *zap.Logger
	// Path is the configuration file a reload reads ("": none).
	Path string
	// Override applies what the command line sets over the file (such as
	// -listen) to each configuration a reload reads, as it was applied to
	// the first: the file's own value is then no change to report.
	Override func(*config.Config)
	// OnReload are told of a new configuration once the swapper and
	// router have it (the proxy, the metrics, the log level).
	OnReload []func(*config.Config)
	// Clock is the time commands go by (nil: the real clock).
	Clock clock.Clock
}

// Controller carries out operators' commands.
type Controller struct {
	opts  Options
	log   *zap.Logger
	clock clock.Clock

	// reloadMu makes reloads one at a time; a reload waits for nothing
	// while it holds it but its file.
	reloadMu sync.Mutex
	cfg      atomic.Pointer[config.Config]
	// modeMu guards the mode memory's read-modify-write and the switch in
	// progress; it is never held across a wait.
	modeMu       sync.Mutex
	generation   uint64             // of the latest switch or restore
	cancelSwitch context.CancelFunc // the one in progress
	// background are the models a reload removed, still draining, and
	// the preloads a reload started.
	background sync.WaitGroup
	ctx        context.Context // ends with Close
	cancel     context.CancelFunc
}

// New returns a Controller.
func New(opts Options) *Controller {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	c := &Controller{opts: opts, log: opts.Log, clock: clock.Or(opts.Clock)}
	c.cfg.Store(opts.Config)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Close calls off every command in progress (their callers are answered
// ErrClosed's way: their contexts end) and what the controller does in
// the background (removals and preloads after a reload), and waits for
// the background to end.
func (c *Controller) Close() {
	c.reloadMu.Lock() // no reload adds to the background once Wait has begun
	c.cancel()
	c.reloadMu.Unlock()
	c.background.Wait()
}

// bound is ctx, also ended by Close: a command's own context.
func (c *Controller) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// ErrUnknownMode is returned for a mode the configuration does not name.
var ErrUnknownMode = errors.New("unknown mode")

// ErrNothingToRestore is returned by Restore when no mode switch is
// remembered.
var ErrNothingToRestore = errors.New("no mode switch to restore")

func (c *Controller) config() *config.Config { return c.cfg.Load() }

// Resolve maps a model name or alias to its id; an unknown name is
// swapper.ErrUnknownModel.
func (c *Controller) Resolve(name string) (string, error) {
	m, ok := c.config().Resolve(name)
	if !ok {
		return "", fmt.Errorf("%w: %q", swapper.ErrUnknownModel, name)
	}
	return m.ID, nil
}

// Load brings model in as a request would (the same queue, policy and
// memory rules), and returns once it is ready, or when ctx ends.
func (c *Controller) Load(ctx context.Context, name string) error {
	id, err := c.Resolve(name)
	if err != nil {
		return err
	}
	ctx, done := c.bound(ctx)
	defer done()
	return c.closing(c.opts.Door.Load(ctx, id, router.LoadOptions{Reason: "loaded by an operator"}))
}

// Unload drains and stops model (see router.Unload).
func (c *Controller) Unload(ctx context.Context, name string, force bool) error {
	id, err := c.Resolve(name)
	if err != nil {
		return err
	}
	ctx, done := c.bound(ctx)
	defer done()
	return c.closing(c.opts.Door.Unload(ctx, id, force))
}

// ForgetFootprint drops what hotswap learned of model's memory, under
// every command it has had: planning goes by its declared memory until it
// is measured again, at its next start (or its next look, if it runs). It
// returns the model's id and how many footprints there were.
func (c *Controller) ForgetFootprint(name string) (string, int, error) {
	id, err := c.Resolve(name)
	if err != nil || c.opts.Learned == nil {
		return id, 0, err
	}
	n, err := c.opts.Learned.Forget(id)
	if err == nil {
		c.log.Info("footprint forgotten", zap.String("model", id), zap.Int("footprints", n))
	}
	return id, n, err
}

// closing says a command called off by Close was ended by hotswap closing.
func (c *Controller) closing(err error) error {
	if err != nil && c.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", swapper.ErrClosed, err)
	}
	return err
}

// UnloadAll unloads every model that is loaded or loading, all at once,
// and returns what it unloaded.
func (c *Controller) UnloadAll(ctx context.Context, force bool) ([]string, error) {
	loaded := c.loaded(c.config(), true)
	ctx, done := c.bound(ctx)
	defer done()
	return loaded, c.closing(c.unload(ctx, loaded, force))
}

func (c *Controller) unload(ctx context.Context, ids []string, force bool) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.opts.Door.Unload(ctx, id, force)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// loaded lists the models loaded, in cfg's order: ready and starting ones,
// and, with leaving, those draining or stopping too.
func (c *Controller) loaded(cfg *config.Config, leaving bool) []string {
	in := map[string]bool{}
	for _, st := range c.opts.Lifecycle.Statuses() {
		switch st.State {
		case swapper.Ready, swapper.Starting:
			in[st.Model] = true
		case swapper.Draining, swapper.Stopping, swapper.Sleeping, swapper.Asleep:
			// Asleep, a model still holds memory: unloading all stops it.
			in[st.Model] = leaving
		}
	}
	var out []string
	for _, id := range cfg.ModelIDs {
		if in[id] {
			out = append(out, id)
		}
	}
	return out
}

// ModelStatus is one model as GET /admin/models shows it (and, for the
// ones not stopped, GET /admin/running).
type ModelStatus struct {
	Model string `json:"model"`
	// State is stopped, starting, ready, draining, stopping, sleeping
	// (being put to sleep) or asleep (see Sleep); or failed:
	// stopped, and refused until RetryInSeconds have passed because its
	// last start failed (LastError says why).
	State string `json:"state"`
	// StateSeconds is how long it has been in State (absent for a model
	// that never started).
	StateSeconds *float64 `json:"state_seconds,omitempty"`
	Kind         string   `json:"kind,omitempty"`
	Pinned       bool     `json:"pinned,omitempty"`
	Pid          int      `json:"pid,omitempty"`
	Port         int      `json:"port,omitempty"`
	Device       string   `json:"device,omitempty"`
	RAM          int64    `json:"ram"`  // measured
	VRAM         int64    `json:"vram"` // measured
	// Declared* is the config's memory; Need* what planning counts: the
	// declaration raised to the learned footprint.
	DeclaredRAM  int64 `json:"declared_ram"`
	DeclaredVRAM int64 `json:"declared_vram"`
	NeedRAM      int64 `json:"need_ram"`
	NeedVRAM     int64 `json:"need_vram"`
	// Parallel is how many requests its backend is sent at once.
	Parallel int       `json:"parallel"`
	InFlight int       `json:"in_flight"`
	Queued   int64     `json:"queued"`
	LastUsed time.Time `json:"last_used,omitzero"`
	// UptimeSeconds counts from the process's start.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// TTLSeconds is the model's ttl (absent without one); TTLLeftSeconds
	// how long it may stay idle before the ttl unloads it, while ready.
	TTLSeconds     float64  `json:"ttl_seconds,omitempty"`
	TTLLeftSeconds *float64 `json:"ttl_left_seconds,omitempty"`
	RetryInSeconds float64  `json:"retry_in_seconds,omitempty"`
	LastError      string   `json:"last_error,omitempty"`
	// ReadAhead is how far its weight files were last read into the page
	// cache: while its current or last start waited, or while requests
	// queued for it waited for its start (queued); absent if none were.
	ReadAhead *ReadAheadStatus `json:"read_ahead,omitempty"`
	// Sleep is there for a model that can sleep rather than stop (its
	// config's sleep).
	Sleep *SleepStatus `json:"sleep,omitempty"`
}

// SleepStatus is what /admin/models says of a model that can sleep.
type SleepStatus struct {
	// RAM and VRAM are what it is planned to hold asleep: declared,
	// raised to what it was measured to hold.
	RAM  int64 `json:"ram"`
	VRAM int64 `json:"vram"`
	// WakeSeconds is how long its last wake took (absent before one).
	WakeSeconds float64 `json:"wake_seconds,omitempty"`
	// Waking says its start now is a wake.
	Waking bool `json:"waking,omitempty"`
}

// ReadAheadStatus is a model's read-ahead in /admin/models.
type ReadAheadStatus struct {
	Bytes  int64 `json:"bytes"`
	Total  int64 `json:"total"`
	Done   bool  `json:"done"`
	Queued bool  `json:"queued,omitempty"`
}

// Running reports the models that are starting, ready, draining or
// stopping, in configuration order.
func (c *Controller) Running() []ModelStatus {
	out := []ModelStatus{}
	for _, r := range c.Models() {
		if r.State != "stopped" && r.State != "failed" {
			out = append(out, r)
		}
	}
	return out
}

// Models reports every configured model, in configuration order.
func (c *Controller) Models() []ModelStatus {
	cfg := c.config()
	now := c.clock.Now()
	byID := map[string]swapper.Status{}
	for _, st := range c.opts.Lifecycle.Statuses() {
		byID[st.Model] = st
	}
	out := make([]ModelStatus, 0, len(cfg.ModelIDs))
	for _, id := range cfg.ModelIDs {
		m := cfg.Models[id]
		st, ok := byID[id]
		if !ok {
			st = swapper.Status{Model: id, State: swapper.Stopped, Need: m.Memory}
		}
		r := ModelStatus{Model: id, State: st.State.String(), Kind: m.Kind, Pinned: m.Pinned, Pid: st.Pid,
			Port: st.Port, Device: st.Device, RAM: st.Usage.RAM, VRAM: st.Usage.TotalVRAM(),
			DeclaredRAM: m.Memory.RAM, DeclaredVRAM: m.Memory.VRAM, NeedRAM: st.Need.RAM,
			NeedVRAM: st.Need.VRAM, Parallel: m.Parallel, InFlight: st.InFlight, LastUsed: st.LastUsed,
			TTLSeconds: m.TTL.Seconds()}
		if !st.Since.IsZero() {
			in := now.Sub(st.Since).Seconds()
			r.StateSeconds = &in
		}
		if st.State == swapper.Stopped && now.Before(st.RetryAt) {
			r.State = "failed"
			r.RetryInSeconds = st.RetryAt.Sub(now).Seconds()
			if st.LastError != nil {
				r.LastError = st.LastError.Error()
			}
		}
		if s := c.opts.Door.Stats(id); s != nil {
			r.Queued = s.Queued.Load()
		}
		if a := st.ReadAhead; a.Total > 0 {
			r.ReadAhead = &ReadAheadStatus{Bytes: a.Bytes, Total: a.Total, Done: a.Done, Queued: a.Queued}
		}
		if !st.Started.IsZero() {
			r.UptimeSeconds = now.Sub(st.Started).Seconds()
		}
		if m.Sleep != nil {
			r.Sleep = &SleepStatus{RAM: st.AsleepNeed.RAM, VRAM: st.AsleepNeed.VRAM, WakeSeconds: st.WakeTook.Seconds(), Waking: st.Waking}
		}
		if m.TTL > 0 && !m.Pinned && (st.State == swapper.Ready || st.State == swapper.Asleep) {
			left := m.TTL.Seconds() // its clock starts when it is idle
			if st.InFlight == 0 {
				left = max(0, (m.TTL - now.Sub(st.LastUsed)).Seconds())
			}
			r.TTLLeftSeconds = &left
		}
		out = append(out, r)
	}
	return out
}

// Memory reports every device, or the one named (ram, gpu0, ...).
func (c *Controller) Memory(device string) ([]swapper.DeviceReport, error) {
	all := c.opts.Lifecycle.Memory(true)
	if device == "" {
		return all, nil
	}
	for _, d := range all {
		if d.Device == device {
			return []swapper.DeviceReport{d}, nil
		}
	}
	var names []string
	for _, d := range all {
		names = append(names, d.Device)
	}
	return nil, fmt.Errorf("%w %q; devices: %v", ErrUnknownDevice, device, names)
}

// ErrUnknownDevice is returned for a device hotswap does not see.
var ErrUnknownDevice = errors.New("unknown device")

// ModelResult is what a mode switch or restore did to one model.
type ModelResult struct {
	Model string `json:"model"`
	// Result is "loaded", "kept" (loaded already), "unloaded", or
	// "refused" (it could not be loaded; Error says why).
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// ModeResult is the outcome of a mode switch or restore.
type ModeResult struct {
	Mode       string        `json:"mode,omitempty"`
	Remembered []string      `json:"remembered"`
	Models     []ModelResult `json:"models"`
}

// ModesInfo is GET /admin/modes.
type ModesInfo struct {
	Modes      map[string][]string `json:"modes"`
	Active     string              `json:"active,omitempty"`
	Remembered []string            `json:"remembered"`
}

// Modes lists the modes, the one switched to, and the models remembered.
func (c *Controller) Modes() ModesInfo {
	m := c.opts.Modes.Mode()
	info := ModesInfo{Modes: c.config().Modes, Active: m.Active, Remembered: m.Remembered}
	if info.Remembered == nil {
		info.Remembered = []string{}
	}
	return info
}

// ErrSuperseded ends a mode switch or restore that a newer one replaced.
var ErrSuperseded = errors.New("a newer mode switch or restore replaced this one")

// beginSwitch makes the caller's switch the one in progress: the one
// before it, if any, is called off. ctx is the switch's own (it ends with
// the caller's, a newer switch, or Close); end must be called when it is
// over.
func (c *Controller) beginSwitch(ctx context.Context) (sctx context.Context, gen uint64, end func()) {
	ctx, done := c.bound(ctx)
	ctx, cancel := context.WithCancel(ctx)
	c.modeMu.Lock()
	if c.cancelSwitch != nil {
		c.cancelSwitch()
	}
	c.generation++
	gen = c.generation
	c.cancelSwitch = cancel
	c.modeMu.Unlock()
	return ctx, gen, func() { cancel(); done() }
}

// superseded reports whether a switch or restore newer than gen began.
func (c *Controller) superseded(gen uint64) bool {
	c.modeMu.Lock()
	defer c.modeMu.Unlock()
	return c.generation != gen
}

// outcome is what a switch of generation gen ended with.
func (c *Controller) outcome(gen uint64, err error) error {
	if err != nil && errors.Is(err, context.Canceled) && c.superseded(gen) {
		return fmt.Errorf("%w: %w", ErrSuperseded, err)
	}
	return c.closing(err)
}

// SwitchMode remembers the models loaded now, unloads those not in mode
// (each drains first), and loads the mode's models, each beside the ones
// loaded before it. A model that does not fit is refused with the reason,
// and the others are loaded all the same.
//
// A switch while a mode is active keeps what the first switch remembered:
// restore goes back to how things were before any mode, not to the mode
// before this one. A switch calls off one still in progress (which ends
// with ErrSuperseded, having done what it had done).
func (c *Controller) SwitchMode(ctx context.Context, name string) (ModeResult, error) {
	cfg := c.config()
	want, ok := cfg.Modes[name]
	if !ok {
		return ModeResult{}, fmt.Errorf("%w %q", ErrUnknownMode, name)
	}
	ctx, gen, end := c.beginSwitch(ctx)
	defer end()
	c.modeMu.Lock()
	loaded := c.loaded(cfg, false)
	remembered := loaded
	if prev := c.opts.Modes.Mode(); prev.Active != "" {
		remembered = prev.Remembered
	}
	if remembered == nil {
		remembered = []string{}
	}
	serr := c.opts.Modes.SetMode(ModeMemory{Active: name, Remembered: remembered})
	c.modeMu.Unlock()
	if serr != nil {
		c.log.Warn("saving the mode", zap.Error(serr))
	}
	res, err := c.become(ctx, want, loaded, "mode "+name)
	res.Mode, res.Remembered = name, remembered
	c.publish(res, "switch")
	return res, c.outcome(gen, err)
}

// Restore returns to the models remembered by the last switch: what is
// loaded afterwards is what was loaded before it (models in both stay
// as they are, process and all). A restore is a switch too: it calls off
// one in progress, and a newer one calls it off.
func (c *Controller) Restore(ctx context.Context) (ModeResult, error) {
	ctx, gen, end := c.beginSwitch(ctx)
	defer end()
	c.modeMu.Lock()
	m := c.opts.Modes.Mode()
	c.modeMu.Unlock()
	if m.Active == "" && len(m.Remembered) == 0 {
		return ModeResult{}, ErrNothingToRestore
	}
	cfg := c.config()
	var want []string
	for _, id := range m.Remembered {
		if _, ok := cfg.Models[id]; ok { // a reload may have removed it
			want = append(want, id)
		}
	}
	res, err := c.become(ctx, want, c.loaded(cfg, false), "restore")
	res.Remembered = m.Remembered
	// Forgotten once restored; a restore called off leaves the memory, so
	// that the switch that replaced it still remembers how things were.
	c.modeMu.Lock()
	if err == nil && c.generation == gen {
		if serr := c.opts.Modes.SetMode(ModeMemory{}); serr != nil {
			c.log.Warn("saving the mode", zap.Error(serr))
		}
	}
	c.modeMu.Unlock()
	c.publish(res, "restore")
	return res, c.outcome(gen, err)
}

// become makes want the set of models loaded, from the loaded ones: the
// others go first (draining), then want's models are loaded in order,
// through the router. Each load counts the whole set as busy, so that none
// evicts another, and it never drains a busy model (as the router counts
// them when it decides: queued, in flight, just used): a model that fits
// only by stopping one is refused with the reason. A loaded model is not
// held while the next loads: held, it was a busy model the router could
// decide to drain for waiting requests, whose start then waited for it
// while this load waited for that start's memory (found by the soak).
func (c *Controller) become(ctx context.Context, want, loaded []string, reason string) (ModeResult, error) {
	res := ModeResult{Models: []ModelResult{}}
	var out []string
	for _, id := range loaded {
		if !slices.Contains(want, id) {
			out = append(out, id)
		}
	}
	if err := c.unload(ctx, out, false); err != nil {
		return res, err
	}
	for _, id := range out {
		res.Models = append(res.Models, ModelResult{Model: id, Result: "unloaded"})
	}
	for _, id := range want {
		was := slices.Contains(loaded, id)
		err := c.opts.Door.Load(ctx, id, router.LoadOptions{Protect: want, Refuse: true, Reason: reason})
		var be *swapper.BusyError
		switch {
		case errors.As(err, &be):
			res.Models = append(res.Models, ModelResult{Model: id, Result: "refused",
				Error: fmt.Sprintf("does not fit beside %v, which are busy or in this set", be.Busy)})
			continue
		case ctx.Err() != nil:
			return res, ctx.Err()
		case err != nil:
			res.Models = append(res.Models, ModelResult{Model: id, Result: "refused", Error: err.Error()})
			continue
		}
		result := "loaded"
		if was {
			result = "kept"
		}
		res.Models = append(res.Models, ModelResult{Model: id, Result: result})
	}
	return res, nil
}

func (c *Controller) publish(res ModeResult, what string) {
	data := map[string]any{"action": what, "remembered": res.Remembered}
	for _, m := range res.Models {
		data[m.Result] = append(asStrings(data[m.Result]), m.Model)
	}
	c.opts.Events.Publish(events.Event{Type: events.Mode, Message: res.Mode, Data: data})
	c.log.Info("mode "+what, zap.String("mode", res.Mode), zap.Any("models", res.Models))
}

func asStrings(v any) []string {
	s, _ := v.([]string)
	return s
}

// Planner is what a dry run asks of the lifecycle (the swapper has it).
type Planner interface {
	DryRun(model string, o swapper.DryRunOptions) (swapper.DryRun, error)
}

// ErrNoPlanner refuses a dry run where the lifecycle cannot plan.
var ErrNoPlanner = errors.New("dry runs are not available")

// Plan says what a request for name (a model, alias or variant) would do
// now: GET /admin/plan. It changes nothing. The models with requests
// queued or in flight at the router count as busy, as they do for a real
// start; max_wait is the batch policy's.
func (c *Controller) Plan(name string) (swapper.DryRun, error) {
	id, err := c.Resolve(name)
	if err != nil {
		return swapper.DryRun{}, err
	}
	p, ok := c.opts.Lifecycle.(Planner)
	if !ok {
		return swapper.DryRun{}, ErrNoPlanner
	}
	cfg := c.config()
	o := swapper.DryRunOptions{Busy: func(m string) bool {
		st := c.opts.Door.Stats(m)
		return st != nil && (st.Queued.Load() > 0 || st.InFlight.Load() > 0)
	}}
	if cfg.Scheduling.Policy != config.PolicyFIFO {
		o.MaxWait = cfg.Scheduling.MaxWait
	}
	return p.DryRun(id, o)
}
