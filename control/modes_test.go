package control

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/state"
	"github.com/hotswap/hotswap/swapper"
)

// modesConfig has a model outside every mode (x), as a user's usual
// model, and two modes to switch among.
const modesConfig = `
ports: 28100-28199
stop_timeout: 2s
models:
  x: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
modes:
  art: [a]
  chat: [b]
`

// modeRig is a controller over a real router and swapper running mock
// backends, with its mode memory in a state file.
type modeRig struct {
	t     *testing.T
	sw    *swapper.Swapper
	rt    *router.Router
	ctl   *Controller
	modes *state.File
	once  sync.Once
}

// newModeRig starts one "run of hotswap" whose state file is state.
func newModeRig(t *testing.T, statePath string) *modeRig {
	t.Helper()
	cfg, err := config.Parse([]byte(strings.ReplaceAll(modesConfig, "MOCK", mockExe)))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := state.Open(statePath)
	if err != nil {
		t.Fatal(err)
	}
	sw := swapper.New(swapper.Options{Models: cfg.Models, Ports: cfg.Ports})
	rt := router.New(sw, router.ConfigOptions(cfg, nil))
	ctl := New(Options{Config: cfg, Lifecycle: sw, Door: rt, Modes: StateModes{fp}, Learned: fp})
	r := &modeRig{t: t, sw: sw, rt: rt, ctl: ctl, modes: fp}
	t.Cleanup(r.stop)
	return r
}

// stop ends this run: the controller, then every backend.
func (r *modeRig) stop() {
	r.once.Do(func() {
		r.ctl.Close()
		r.rt.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.sw.Close(ctx)
	})
}

// load brings model in, as a request would have.
func (r *modeRig) load(model string) {
	r.t.Helper()
	if err := r.rt.Load(context.Background(), model, router.LoadOptions{}); err != nil {
		r.t.Fatalf("load %s: %v", model, err)
	}
}

// loaded is the models ready or starting, in configuration order.
func (r *modeRig) loaded() []string { return r.ctl.loaded(r.ctl.config(), false) }

func (r *modeRig) switchTo(mode string) ModeResult {
	r.t.Helper()
	res, err := r.ctl.SwitchMode(context.Background(), mode)
	if err != nil {
		r.t.Fatalf("switch to %s: %v", mode, err)
	}
	return res
}

func (r *modeRig) restore() ModeResult {
	r.t.Helper()
	res, err := r.ctl.Restore(context.Background())
	if err != nil {
		r.t.Fatalf("restore: %v", err)
	}
	return res
}

func TestRestoreReturnsToBeforeTheFirstSwitch(t *testing.T) {
	r := newModeRig(t, filepath.Join(t.TempDir(), "state.json"))
	r.load("x")

	if res := r.switchTo("art"); !slices.Equal(res.Remembered, []string{"x"}) {
		t.Errorf("switch to art remembered %v, want [x]", res.Remembered)
	}
	if got := r.loaded(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("in art: %v loaded", got)
	}
	// A second switch keeps what the first remembered: [a], loaded now,
	// is a mode's set, not the user's.
	if res := r.switchTo("chat"); !slices.Equal(res.Remembered, []string{"x"}) {
		t.Errorf("switch from art to chat remembered %v, want [x]", res.Remembered)
	}
	if info := r.ctl.Modes(); info.Active != "chat" || !slices.Equal(info.Remembered, []string{"x"}) {
		t.Errorf("modes after art then chat: %+v", info)
	}
	// Switching to the mode already active changes nothing remembered.
	if res := r.switchTo("chat"); !slices.Equal(res.Remembered, []string{"x"}) || len(res.Models) != 1 ||
		res.Models[0].Result != "kept" {
		t.Errorf("chat again: %+v", res)
	}
	if got := r.loaded(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("in chat: %v loaded", got)
	}

	res := r.restore()
	if got := r.loaded(); !slices.Equal(got, []string{"x"}) {
		t.Errorf("after restore: %v loaded, want [x] (what was loaded before any mode)", got)
	}
	if !slices.Equal(res.Remembered, []string{"x"}) {
		t.Errorf("restore answered remembered %v", res.Remembered)
	}

	// After a restore, the next switch remembers afresh.
	r.load("a")
	if res := r.switchTo("chat"); !slices.Equal(res.Remembered, []string{"x", "a"}) {
		t.Errorf("first switch after a restore remembered %v, want [x a]", res.Remembered)
	}
}

// TestFirstSwitchWithNothingLoaded: "nothing" is a set to return to as
// well; the second switch must not remember the first mode's models.
func TestFirstSwitchWithNothingLoaded(t *testing.T) {
	r := newModeRig(t, filepath.Join(t.TempDir(), "state.json"))
	r.switchTo("art")
	if res := r.switchTo("chat"); len(res.Remembered) != 0 {
		t.Errorf("art then chat from nothing remembered %v", res.Remembered)
	}
	r.restore()
	if got := r.loaded(); len(got) != 0 {
		t.Errorf("after restore: %v loaded, want none", got)
	}
	if _, err := r.ctl.Restore(context.Background()); !errors.Is(err, ErrNothingToRestore) {
		t.Errorf("a second restore: %v", err)
	}
}

// TestModeMemorySurvivesARestart: hotswap restarts in the middle of a
// session of modes; the set from before the first switch is still what a
// switch keeps and what restore brings back.
func TestModeMemorySurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	first := newModeRig(t, path)
	first.load("x")
	first.switchTo("art")
	first.stop()

	second := newModeRig(t, path)
	if info := second.ctl.Modes(); info.Active != "art" || !slices.Equal(info.Remembered, []string{"x"}) {
		t.Fatalf("after a restart: %+v", info)
	}
	second.load("a") // preloaded, or asked for again
	if res := second.switchTo("chat"); !slices.Equal(res.Remembered, []string{"x"}) {
		t.Errorf("switch after a restart remembered %v, want [x]", res.Remembered)
	}
	second.stop()

	third := newModeRig(t, path)
	third.restore()
	if got := third.loaded(); !slices.Equal(got, []string{"x"}) {
		t.Errorf("restore after two restarts: %v loaded, want [x]", got)
	}
	if info := third.ctl.Modes(); info.Active != "" || len(info.Remembered) != 0 {
		t.Errorf("after restore: %+v", info)
	}
}
