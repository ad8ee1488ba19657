package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// Mode switches, restores and reloads against a scripted router: what
// each asks of the door, in which order, and what happens when one is
// called off, by a newer switch, by a reload, by its caller, by Close.

// world is the scripted router and swapper: what is loaded, what each
// load and unload asks, and the ones that hang (a drain that takes a
// long time) until let go.
type world struct {
	mu       sync.Mutex
	loaded   map[string]bool
	calls    []string                 // "load a [protect]", "unload b"
	busy     map[string][]string      // a load refused: model → busy models in its way
	hang     map[string]chan struct{} // an unload or load of the model waits for this
	entered  chan string              // each call, as it begins
	reloaded int
}

func newWorld(loaded ...string) *world {
	w := &world{loaded: map[string]bool{}, busy: map[string][]string{}, hang: map[string]chan struct{}{},
		entered: make(chan string, 64)}
	for _, id := range loaded {
		w.loaded[id] = true
	}
	return w
}

func (w *world) call(what, model string, ctx context.Context) error {
	w.mu.Lock()
	w.calls = append(w.calls, what+" "+model)
	hang := w.hang[model]
	w.mu.Unlock()
	w.entered <- what + " " + model
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (w *world) Load(ctx context.Context, model string, o router.LoadOptions) error {
	if err := w.call(fmt.Sprintf("load %v", o.Protect), model, ctx); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if busy := w.busy[model]; len(busy) > 0 {
		return &swapper.BusyError{Model: model, Victims: busy, Busy: busy}
	}
	w.loaded[model] = true
	return nil
}

func (w *world) Unload(ctx context.Context, model string, _ bool) error {
	if err := w.call("unload", model, ctx); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.loaded, model)
	return nil
}

func (w *world) Stats(string) *router.Stats { return nil }
func (w *world) Reconfigure(router.Options, map[string]*config.Model, swapper.Settings) map[string]<-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reloaded++
	return nil
}
func (w *world) Remove(context.Context, string) error { return nil }

func (w *world) Statuses() []swapper.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []swapper.Status
	for id := range w.loaded {
		out = append(out, swapper.Status{Model: id, State: swapper.Ready})
	}
	return out
}
func (w *world) Memory(bool) []swapper.DeviceReport { return nil }

func (w *world) callsSoFar() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

// waitEntered waits for the door to be asked what.
func (w *world) waitEntered(t *testing.T, what string) {
	t.Helper()
	for {
		select {
		case got := <-w.entered:
			if got == what {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the door was never asked %q; asked %q", what, w.callsSoFar())
		}
	}
}

const switchConfig = `
models:
  x: {cmd: "MOCK --port ${PORT}"}
  a: {cmd: "MOCK --port ${PORT}"}
  b: {cmd: "MOCK --port ${PORT}"}
  c: {cmd: "MOCK --port ${PORT}"}
modes:
  art: [a, b]
  chat: [c]
`

func newSwitchController(t *testing.T, w *world) (*Controller, *fakeModes, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(switchConfig, "MOCK", mockExe)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	modes := &fakeModes{}
	c := New(Options{Config: cfg, Lifecycle: w, Door: w, Modes: modes, Path: path,
		Clock: clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))})
	t.Cleanup(c.Close)
	return c, modes, path
}

// TestSwitchThenRestore: a switch unloads what is not in the mode, then
// loads the mode's models through the door, each protecting the whole set
// and refused rather than stopping a busy model; restore undoes exactly
// that.
func TestSwitchThenRestore(t *testing.T) {
	w := newWorld("x", "a")
	w.busy["b"] = []string{"y"}
	c, modes, _ := newSwitchController(t, w)
	res, err := c.SwitchMode(context.Background(), "art")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"unload x", "load [a b] a", "load [a b] b"}
	if got := w.callsSoFar(); !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	if !slices.Equal(res.Remembered, []string{"x", "a"}) || modes.m.Active != "art" {
		t.Errorf("remembered %v, active %q", res.Remembered, modes.m.Active)
	}
	results := map[string]string{}
	for _, m := range res.Models {
		results[m.Model] = m.Result
	}
	if results["x"] != "unloaded" || results["a"] != "kept" || results["b"] != "refused" {
		t.Errorf("results %+v", res.Models)
	}

	w.calls = nil
	delete(w.busy, "b")
	if _, err := c.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = []string{"load [x a] x", "load [x a] a"}
	if got := w.callsSoFar(); !slices.Equal(got, want) {
		t.Errorf("restore asked %q, want %q", got, want)
	}
	if modes.m.Active != "" || len(modes.m.Remembered) != 0 {
		t.Errorf("after restore, mode memory %+v", modes.m)
	}
}

// TestNewerSwitchCallsOffTheOlder: art waits for x's drain; chat, asked
// meanwhile, calls art off at once (it answers ErrSuperseded, having
// loaded nothing), then waits for that same drain itself, and remembers
// what was loaded before art.
func TestNewerSwitchCallsOffTheOlder(t *testing.T) {
	w := newWorld("x")
	w.hang["x"] = make(chan struct{}) // x's drain takes as long as it takes
	c, modes, _ := newSwitchController(t, w)
	art := make(chan error, 1)
	go func() {
		_, err := c.SwitchMode(context.Background(), "art")
		art <- err
	}()
	w.waitEntered(t, "unload x")
	type outcome struct {
		res ModeResult
		err error
	}
	chat := make(chan outcome, 1)
	go func() {
		res, err := c.SwitchMode(context.Background(), "chat")
		chat <- outcome{res, err}
	}()
	select {
	case err := <-art:
		if !errors.Is(err, ErrSuperseded) {
			t.Fatalf("art, called off by chat: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("art went on waiting for the drain after chat called it off")
	}
	w.waitEntered(t, "unload x") // chat's own
	close(w.hang["x"])
	var o outcome
	select {
	case o = <-chat:
	case <-time.After(10 * time.Second):
		t.Fatal("chat did not end once the drain had")
	}
	if o.err != nil || !slices.Equal(o.res.Remembered, []string{"x"}) || modes.m.Active != "chat" {
		t.Fatalf("chat: %+v %v; memory %+v", o.res, o.err, modes.m)
	}
	for _, call := range w.callsSoFar() {
		if strings.HasPrefix(call, "load") && !strings.HasSuffix(call, " c") {
			t.Errorf("a called-off switch loaded: %s", call)
		}
	}
}

// TestReloadDoesNotWaitForASwitch: a reload during a switch that waits on
// a drain is carried out at once.
func TestReloadDoesNotWaitForASwitch(t *testing.T) {
	w := newWorld("x")
	w.hang["x"] = make(chan struct{})
	c, _, _ := newSwitchController(t, w)
	go c.SwitchMode(context.Background(), "art") //nolint:errcheck // called off at cleanup
	w.waitEntered(t, "unload x")
	done := make(chan error, 1)
	go func() {
		_, err := c.Reload(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || w.reloaded != 1 {
			t.Fatalf("reload during a switch: %v (reconfigured %d)", err, w.reloaded)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reload waited behind the switch")
	}
	close(w.hang["x"])
}

// TestSwitchEndsWithItsCaller: an operator who hangs up ends the switch's
// wait (the drain it started goes on); Close ends every switch, as
// hotswap shuts down.
func TestSwitchEndsWithItsCaller(t *testing.T) {
	w := newWorld("x")
	w.hang["x"] = make(chan struct{})
	c, modes, _ := newSwitchController(t, w)
	ctx, hangUp := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		_, err := c.SwitchMode(ctx, "art")
		ended <- err
	}()
	w.waitEntered(t, "unload x")
	hangUp()
	if err := <-ended; !errors.Is(err, context.Canceled) || errors.Is(err, ErrSuperseded) {
		t.Fatalf("a switch whose caller left: %v", err)
	}
	// What it remembered stays: the mode did begin.
	if modes.m.Active != "art" || !slices.Equal(modes.m.Remembered, []string{"x"}) {
		t.Errorf("mode memory %+v", modes.m)
	}

	// x is still loaded (its drain goes on): restoring it waits on x too.
	go func() {
		_, err := c.Restore(context.Background())
		ended <- err
	}()
	w.waitEntered(t, "load [x] x")
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	if err := <-ended; !errors.Is(err, swapper.ErrClosed) {
		t.Errorf("a restore as hotswap closes: %v", err)
	}
	<-closed
	// Called off, a restore leaves the memory for the next one.
	if modes.m.Active != "art" {
		t.Errorf("a restore called off forgot the mode: %+v", modes.m)
	}
}
