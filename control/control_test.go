package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// fakeLifecycle answers from fixed statuses.
type fakeLifecycle struct {
	statuses []swapper.Status
	devices  []swapper.DeviceReport
}

func (f *fakeLifecycle) Statuses() []swapper.Status         { return f.statuses }
func (f *fakeLifecycle) Memory(bool) []swapper.DeviceReport { return f.devices }

// fakeDoor is a router that counts reconfigures and has counters.
type fakeDoor struct {
	stats        map[string]*router.Stats
	reconfigured int
}

func (f *fakeDoor) Load(context.Context, string, router.LoadOptions) error { return nil }
func (f *fakeDoor) Unload(context.Context, string, bool) error             { return nil }
func (f *fakeDoor) Stats(m string) *router.Stats                           { return f.stats[m] }
func (f *fakeDoor) Reconfigure(router.Options, map[string]*config.Model, swapper.Settings) map[string]<-chan struct{} {
	f.reconfigured++
	return nil
}
func (f *fakeDoor) Remove(context.Context, string) error { return nil }

type fakeModes struct{ m ModeMemory }

func (f *fakeModes) Mode() ModeMemory           { return f.m }
func (f *fakeModes) SetMode(m ModeMemory) error { f.m = m; return nil }

// twoModels' programs are the mock backend (MOCK), so that a reload finds
// them; nothing here starts them.
const twoModels = `
models:
  a: {cmd: "MOCK --port ${PORT}", ttl: 10m}
  b: {cmd: "MOCK --port ${PORT}"}
`

func newController(t *testing.T, text string, lc *fakeLifecycle) (*Controller, string) {
	c, path, _ := newControllerDoor(t, text, lc)
	return c, path
}

func newControllerDoor(t *testing.T, text string, lc *fakeLifecycle) (*Controller, string, *fakeDoor) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "MOCK", mockExe)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDoor{stats: map[string]*router.Stats{"a": {}, "b": {}}}
	d.stats["a"].Queued.Store(3)
	c := New(Options{Config: cfg, Lifecycle: lc, Door: d, Modes: &fakeModes{}, Path: path,
		Clock: clock.NewFake(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))})
	t.Cleanup(c.Close)
	return c, path, d
}

func TestRunning(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	lc := &fakeLifecycle{statuses: []swapper.Status{
		{Model: "b", State: swapper.Stopped},
		{Model: "a", State: swapper.Ready, Pid: 42, Port: 10001, Device: "ram",
			Started: now.Add(-time.Hour), LastUsed: now.Add(-4 * time.Minute),
			ReadAhead: swapper.ReadAhead{Bytes: 5, Total: 9}},
	}}
	c, _ := newController(t, twoModels, lc)
	for _, m := range c.Models() {
		if ra := m.ReadAhead; (m.Model == "a") != (ra != nil) || ra != nil && *ra != (ReadAheadStatus{Bytes: 5, Total: 9}) {
			t.Errorf("%s's read-ahead: %+v", m.Model, ra)
		}
	}
	got := c.Running()
	if len(got) != 1 {
		t.Fatalf("running %+v: a stopped model is not running", got)
	}
	r := got[0]
	if r.Model != "a" || r.Pid != 42 || r.Queued != 3 || r.UptimeSeconds != 3600 ||
		r.TTLLeftSeconds == nil || *r.TTLLeftSeconds != 360 {
		t.Errorf("running a: %+v", r)
	}
}

func TestMemoryNamesTheDevices(t *testing.T) {
	lc := &fakeLifecycle{devices: []swapper.DeviceReport{{Device: "ram"}, {Device: "gpu0"}}}
	c, _ := newController(t, twoModels, lc)
	if d, err := c.Memory("gpu0"); err != nil || len(d) != 1 || d[0].Device != "gpu0" {
		t.Errorf("gpu0: %v %v", d, err)
	}
	_, err := c.Memory("gpu3")
	if !errors.Is(err, ErrUnknownDevice) || !strings.Contains(err.Error(), "gpu0") {
		t.Errorf("gpu3: %v", err)
	}
}

func TestReloadRefusesABadFileAndKeepsTheOld(t *testing.T) {
	lc := &fakeLifecycle{}
	c, path, door := newControllerDoor(t, twoModels, lc)
	os.WriteFile(path, []byte("models:\n  a: {cmd: \"srv\", ttl: later}\n  b: {memory: {ram: 3XB}}\n"), 0o644)
	_, err := c.Reload(context.Background())
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "models.a.ttl") ||
		!strings.Contains(err.Error(), "models.b") {
		t.Errorf("bad reload: %v", err)
	}
	if door.reconfigured != 0 || len(c.config().Models) != 2 || c.config().Models["a"].TTL != 10*time.Minute {
		t.Error("a refused reload changed something")
	}
	os.Remove(path)
	if _, err := c.Reload(context.Background()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("reload of a missing file: %v", err)
	}
	c.opts.Path = ""
	if _, err := c.Reload(context.Background()); !errors.Is(err, ErrNoConfigFile) {
		t.Errorf("reload without a file: %v", err)
	}
}

func TestReloadKeepsWhatNeedsARestart(t *testing.T) {
	lc := &fakeLifecycle{}
	c, path, door := newControllerDoor(t, "listen: 127.0.0.1:9000\n"+twoModels, lc)
	os.WriteFile(path, []byte("listen: 127.0.0.1:9001\nlog_level: debug\n"+strings.ReplaceAll(twoModels, "MOCK", mockExe)), 0o644)
	res, err := c.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NeedsRestart) != 1 || res.NeedsRestart[0] != "listen" || door.reconfigured != 1 {
		t.Errorf("reload: %+v", res)
	}
	if cfg := c.config(); cfg.Listen != "127.0.0.1:9000" || cfg.LogLevel != "debug" {
		t.Errorf("after reload: listen %s, log_level %s", cfg.Listen, cfg.LogLevel)
	}
}

// TestReloadAppliesTheCommandLine: with -listen given, the file's listen is
// not what runs, so a reload of the same file changes nothing there.
func TestReloadAppliesTheCommandLine(t *testing.T) {
	lc := &fakeLifecycle{}
	c, _, _ := newControllerDoor(t, "listen: 127.0.0.1:9000\n"+twoModels, lc)
	override := func(cfg *config.Config) { cfg.Listen = "127.0.0.1:0" }
	override(c.config())
	c.opts.Override = override
	res, err := c.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NeedsRestart) != 0 || c.config().Listen != "127.0.0.1:0" {
		t.Errorf("reload of the same file: %+v, listen %s", res, c.config().Listen)
	}
}

// TestReloadRefusesAProgramThatCannotRun: a reload that would replace a
// model's backend with one whose program is missing, or is no program, is
// refused whole; the configuration in use goes on.
func TestReloadRefusesAProgramThatCannotRun(t *testing.T) {
	lc := &fakeLifecycle{}
	c, path, door := newControllerDoor(t, twoModels, lc)
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	next := "log_level: debug\nmodels:\n" +
		"  a: {cmd: \"/opt/nowhere/llama-server --port ${PORT}\", ttl: 1m}\n" +
		"  b: {cmd: \"" + plain + " --port ${PORT}\"}\n" +
		"  c: {cmd: \"" + mockExe + " --port ${PORT}\"}\n"
	os.WriteFile(path, []byte(next), 0o644)
	_, err := c.Reload(context.Background())
	var verr *config.ValidationError
	if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &verr) || len(verr.Problems) != 2 ||
		!strings.Contains(verr.Problems[0], `models.a.cmd: program "/opt/nowhere/llama-server" is not found`) ||
		!strings.Contains(verr.Problems[1], "models.b.cmd: program") || !strings.Contains(verr.Problems[1], "is not executable") {
		t.Fatalf("reload with programs that cannot run: %v", err)
	}
	cfg := c.config()
	if door.reconfigured != 0 || len(cfg.Models) != 2 || cfg.Models["a"].TTL != 10*time.Minute ||
		cfg.Models["a"].Cmd[0] != mockExe || cfg.LogLevel != "info" {
		t.Error("a refused reload changed something")
	}
	// Fixed, the same file applies.
	os.WriteFile(path, []byte(strings.ReplaceAll(next, "/opt/nowhere/llama-server", mockExe)+"  b2: {cmd: \"sh -c x ${PORT}\"}\n"), 0o644)
	if err := os.Chmod(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Reload(context.Background()); err != nil || len(res.Added) != 2 || door.reconfigured != 1 {
		t.Errorf("reload of the fixed file: %+v %v", res, err)
	}
}
