// Package control is what operators ask of hotswap: see what runs and the
// memory per device, load and unload models, switch to a mode (a named set
// of models) and back, reload the configuration. Every command goes to the
// same owners as requests do (the router's queues, the swapper's
// decisions), so it follows the same memory rules and never races a swap.
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

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// Lifecycle is what the controller needs of the swapper.
type Lifecycle interface {
	Load(ctx context.Context, model string, p swapper.Policy) (*swapper.Lease, error)
	Unload(ctx context.Context, model string, force bool) error
	Statuses() []swapper.Status
	Memory(fresh bool) []swapper.DeviceReport
	// Reconfigure and Remove are a reload's (see swapper.Reconfigure).
	Reconfigure(models map[string]*config.Model, set swapper.Settings)
	Remove(ctx context.Context, model string) error
}

// Queues is what it needs of the router.
type Queues interface {
	// Acquire waits for model's turn and backend, as a request does.
	Acquire(ctx context.Context, model string) (*router.Lease, error)
	Stats(model string) *router.Stats
	// Busy lists the models with work: queued, in flight, or just used.
	Busy() map[string]bool
	// Reconfigure and Remove are a reload's (see router.Reconfigure).
	Reconfigure(opts router.Options) map[string]<-chan struct{}
	Remove(model string)
}

// ModeStore keeps what a mode switch remembered, across restarts.
type ModeStore interface {
	Mode() swapper.ModeMemory
	SetMode(swapper.ModeMemory) error
}

// Options configure a Controller.
type Options struct {
	Config    *config.Config
	Lifecycle Lifecycle
	Queues    Queues
	Modes     ModeStore
	Events    *events.Hub
	Log       *zap.Logger
	// Path is the configuration file a reload reads ("": none).
	Path string
	// OnReload are told of a new configuration once the swapper and
	// router have it (the proxy, the metrics, the log level).
	OnReload []func(*config.Config)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Controller carries out operators' commands.
type Controller struct {
	opts Options
	log  *zap.Logger
	now  func() time.Time

	mu  sync.Mutex // one mode switch, restore or reload at a time
	cfg atomic.Pointer[config.Config]
	// removals are the models a reload removed, still draining (and
	// preloads a reload started).
	removals sync.WaitGroup
	ctx      context.Context // ends with Close
	cancel   context.CancelFunc
}

// New returns a Controller.
func New(opts Options) *Controller {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Controller{opts: opts, log: opts.Log, now: opts.Now}
	c.cfg.Store(opts.Config)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Close ends what the controller does in the background (removals after
// a reload) and waits for it.
func (c *Controller) Close() {
	c.mu.Lock() // no reload adds to removals once Wait has begun
	c.cancel()
	c.mu.Unlock()
	c.removals.Wait()
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
// memory rules), and returns once it is ready.
func (c *Controller) Load(ctx context.Context, name string) error {
	id, err := c.Resolve(name)
	if err != nil {
		return err
	}
	l, err := c.opts.Queues.Acquire(ctx, id)
	if err != nil {
		return err
	}
	l.Release()
	return nil
}

// Unload drains and stops model (see swapper.Unload).
func (c *Controller) Unload(ctx context.Context, name string, force bool) error {
	id, err := c.Resolve(name)
	if err != nil {
		return err
	}
	return c.opts.Lifecycle.Unload(ctx, id, force)
}

// UnloadAll unloads every model that is loaded or loading, all at once,
// and returns what it unloaded.
func (c *Controller) UnloadAll(ctx context.Context, force bool) ([]string, error) {
	loaded := c.loaded(c.config(), true)
	return loaded, c.unload(ctx, loaded, force)
}

func (c *Controller) unload(ctx context.Context, ids []string, force bool) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.opts.Lifecycle.Unload(ctx, id, force)
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
		case swapper.Draining, swapper.Stopping:
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
	// State is stopped, starting, ready, draining or stopping; or failed:
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
	now := c.now()
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
		if s := c.opts.Queues.Stats(id); s != nil {
			r.Queued = s.Queued.Load()
		}
		if !st.Started.IsZero() {
			r.UptimeSeconds = now.Sub(st.Started).Seconds()
		}
		if m.TTL > 0 && !m.Pinned && st.State == swapper.Ready {
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

// SwitchMode remembers the models loaded now, unloads those not in mode
// (each drains first), and loads the mode's models, each beside the ones
// loaded before it. A model that does not fit is refused with the reason,
// and the others are loaded all the same.
//
// A switch while a mode is active keeps what the first switch remembered:
// restore goes back to how things were before any mode, not to the mode
// before this one.
func (c *Controller) SwitchMode(ctx context.Context, name string) (ModeResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := c.config()
	want, ok := cfg.Modes[name]
	if !ok {
		return ModeResult{}, fmt.Errorf("%w %q", ErrUnknownMode, name)
	}
	loaded := c.loaded(cfg, false)
	remembered := loaded
	if prev := c.opts.Modes.Mode(); prev.Active != "" {
		remembered = prev.Remembered
	}
	if remembered == nil {
		remembered = []string{}
	}
	res, err := c.becomeLocked(ctx, want, loaded, "mode "+name)
	res.Mode, res.Remembered = name, remembered
	if serr := c.opts.Modes.SetMode(swapper.ModeMemory{Active: name, Remembered: remembered}); serr != nil {
		c.log.Warn("saving the mode", zap.Error(serr))
	}
	c.publish(res, "switch")
	return res, err
}

// Restore returns to the models remembered by the last switch: what is
// loaded afterwards is what was loaded before it (models in both stay
// as they are, process and all).
func (c *Controller) Restore(ctx context.Context) (ModeResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.opts.Modes.Mode()
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
	res, err := c.becomeLocked(ctx, want, c.loaded(cfg, false), "restore")
	res.Remembered = m.Remembered
	if serr := c.opts.Modes.SetMode(swapper.ModeMemory{}); serr != nil {
		c.log.Warn("saving the mode", zap.Error(serr))
	}
	c.publish(res, "restore")
	return res, err
}

// becomeLocked makes want the set of models loaded, from the loaded ones:
// the others go first (draining), then want's models are loaded in order.
// None evicts another, as each load counts the set as busy; idle models
// outside want may be evicted for them, busy ones (as the router counts
// them: queued, in flight, just used) not. A loaded model is not held
// while the next loads: held, it was a busy model the router could decide
// to drain for waiting requests, whose start then waited for it while
// this load waited for that start's memory (found by the soak).
func (c *Controller) becomeLocked(ctx context.Context, want, loaded []string, reason string) (ModeResult, error) {
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
	// A snapshot: asked while the swapper decides, the router would have
	// to be asked under the swapper's lock.
	working := c.opts.Queues.Busy()
	busy := func(id string) bool { return working[id] || slices.Contains(want, id) }
	for _, id := range want {
		was := slices.Contains(loaded, id)
		l, err := c.opts.Lifecycle.Load(ctx, id, swapper.Policy{Busy: busy, Reason: reason})
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
		l.Release()
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
