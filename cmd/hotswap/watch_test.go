package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/internal/mocktest"
)

// withWatch runs hotswap with -watch, polling every 50 ms: the flags go
// after the ones startLogged gives.
var withWatch = []string{"sh", "-c", `exec "$@" -watch -watch-interval 50ms`, "sh"}

// secret stands for a key in the configuration file: no log line may
// carry it, whatever the watcher sees.
const secret = "sk-never-in-a-log-0a1b2c"

const watchedConfig = `
# api key of some backend: ` + secret + `
ports: 22000-22999
stop_timeout: 2s
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
`

// TestWatchReloadsTheEditedFile: with -watch, a file saved by renaming a
// new one over it and a file written in place are both applied; a
// half-written save is refused while every model keeps answering; a file
// missing for a while is one warning and no reload; the save that follows
// is applied.
func TestWatchReloadsTheEditedFile(t *testing.T) {
	b := build(t)
	cfg := writeConfig(t, b, watchedConfig)
	cmd, url, logs := startLogged(t, b, cfg, withWatch...)
	c := client{t, url, ""}
	text := func(s string) []byte { return []byte(strings.ReplaceAll(s, "MOCK", b.mock)) }
	known := func(model string) bool {
		code, _, _ := c.do("GET", "/v1/models/"+model, "")
		return code == 200
	}
	logged := func(s string) bool {
		return mocktest.Eventually(10*time.Second, func() bool { return strings.Contains(logs.String(), s) })
	}
	if !logged("watching the configuration file") {
		t.Fatalf("hotswap does not say it watches:\n%s", logs)
	}
	pidA := c.chat("a")

	// An editor's atomic save: a new file renamed over the old one.
	withB := watchedConfig + `  b: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}` + "\n"
	tmp := filepath.Join(filepath.Dir(cfg), ".config.yaml.swp")
	if err := os.WriteFile(tmp, text(withB), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, cfg); err != nil {
		t.Fatal(err)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return known("b") }) {
		t.Fatalf("the renamed-over file was not applied:\n%s", logs)
	}
	c.chat("b")
	if !logged("the configuration file changed; reloading") || !logged(`"added": ["b"]`) {
		t.Errorf("the watch-triggered reload and what it changed are not in the log:\n%s", logs)
	}

	// Written in place.
	withC := withB + `  c: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}` + "\n"
	if err := os.WriteFile(cfg, text(withC), 0o644); err != nil {
		t.Fatal(err)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return known("c") }) {
		t.Fatalf("the file written in place was not applied:\n%s", logs)
	}
	c.chat("c")

	// A save caught half-way (cut inside a quoted string) is refused; the
	// configuration in use keeps serving, the same backend answering.
	half := withC[:strings.LastIndex(withC, "-model")]
	if err := os.WriteFile(cfg, text(half), 0o644); err != nil {
		t.Fatal(err)
	}
	if !logged("reload refused; the configuration in use is unchanged") {
		t.Fatalf("the half-written file was not refused:\n%s", logs)
	}
	if got := c.chat("a"); got != pidA {
		t.Errorf("a is served by pid %d after a refused reload, was %d", got, pidA)
	}
	for _, m := range []string{"b", "c"} {
		if !known(m) {
			t.Errorf("%s is gone after a refused reload", m)
		}
		c.chat(m)
	}

	// Missing for a while (an editor that deletes, then writes): one
	// warning, no reload, still serving.
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	if !logged("the configuration file is missing") {
		t.Fatalf("no warning for the missing file:\n%s", logs)
	}
	c.chat("a")

	// The complete save that follows is applied.
	withD := withC + `  d: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}` + "\n"
	if err := os.WriteFile(cfg, text(withD), 0o644); err != nil {
		t.Fatal(err)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return known("d") }) {
		t.Fatalf("the fixed file was not applied:\n%s", logs)
	}
	c.chat("d")
	if got := c.chat("a"); got != pidA {
		t.Errorf("a was restarted by reloads that did not change it: pid %d, was %d", got, pidA)
	}
	if !logged("the configuration file can be read again") {
		t.Errorf("the file's return is not in the log:\n%s", logs)
	}

	if n := strings.Count(logs.String(), "the configuration file is missing"); n != 1 {
		t.Errorf("%d warnings for one absence, want 1", n)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the file's contents are in the log:\n%s", logs)
	}
	// The watcher stops with the rest: a clean exit.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// TestWatchFollowsAConfigMapSymlink: a Kubernetes ConfigMap mounts the
// file as config.yaml → ..data/config.yaml, and an update points ..data
// at a new directory in one rename; the file's own path never changes.
func TestWatchFollowsAConfigMapSymlink(t *testing.T) {
	b := build(t)
	dir := t.TempDir()
	version := func(name, config string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(strings.ReplaceAll(config, "MOCK", b.mock)), 0o644); err != nil {
			t.Fatal(err)
		}
		// As the kubelet does: a new link, renamed over ..data.
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", watchedConfig)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), cfg); err != nil {
		t.Fatal(err)
	}
	_, url, logs := startLogged(t, b, cfg, withWatch...)
	c := client{t, url, ""}
	c.chat("a")

	version("..v2", strings.Replace(watchedConfig, "  a: ", "  e: ", 1))
	os.RemoveAll(filepath.Join(dir, "..v1"))
	if !mocktest.Eventually(10*time.Second, func() bool {
		code, _, _ := c.do("GET", "/v1/models/e", "")
		return code == 200
	}) {
		t.Fatalf("the ConfigMap's new version was not applied:\n%s", logs)
	}
	c.chat("e")
	if code, body, _ := c.do("POST", "/v1/chat/completions", `{"model":"a","messages":[]}`); code != 404 {
		t.Errorf("a, removed by the new version: %d %s", code, body)
	}
}

// watchFixture is a configWatch on a file of its own, polled by hand on a
// fake clock.
type watchFixture struct {
	t    *testing.T
	path string
	clk  *clock.Fake
	w    *configWatch
	log  *zap.Logger
	logs *observer.ObservedLogs
}

func newWatchFixture(t *testing.T, content string) *watchFixture {
	f := &watchFixture{t: t, path: filepath.Join(t.TempDir(), "config.yaml"), clk: clock.NewFake(time.Now())}
	f.write(content)
	core, logs := observer.New(zap.InfoLevel)
	f.log, f.logs = zap.New(core), logs
	f.w = newConfigWatch(f.path, time.Second, f.clk)
	return f
}

// write writes the file in place (truncated, then written).
func (f *watchFixture) write(content string) {
	f.t.Helper()
	if err := os.WriteFile(f.path, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// polls polls n times, moving the clock an interval before each, and
// returns the answers.
func (f *watchFixture) polls(n int) []bool {
	var out []bool
	for range n {
		f.clk.Advance(f.w.interval)
		out = append(out, f.w.poll(f.log))
	}
	return out
}

// expect checks the answers of the next polls: true where a reload is due.
func (f *watchFixture) expect(what string, want ...bool) {
	f.t.Helper()
	if got := f.polls(len(want)); !equalBools(got, want) {
		f.t.Errorf("%s: reloads %v, want %v", what, got, want)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestConfigWatchOneReloadPerSave: every way a file is saved is one
// reload, once the file has held still for an interval; what changes no
// content is none.
func TestConfigWatchOneReloadPerSave(t *testing.T) {
	f := newWatchFixture(t, "models: {a: {cmd: x}}\n")
	f.expect("nothing changed", false, false, false)

	// A touch: another modification time, the same content. (An hour
	// back, so that the stat is trusted from the next poll on.)
	earlier := f.clk.Now().Add(-time.Hour)
	if err := os.Chtimes(f.path, earlier, earlier); err != nil {
		t.Fatal(err)
	}
	f.expect("touched", false, false, false)

	// Renamed over by a file of the same size and modification time: only
	// the inode tells.
	tmp := f.path + ".tmp"
	os.WriteFile(tmp, []byte("models: {b: {cmd: x}}\n"), 0o644)
	os.Chtimes(tmp, earlier, earlier)
	if err := os.Rename(tmp, f.path); err != nil {
		t.Fatal(err)
	}
	f.expect("renamed over", false, true, false, false)

	// Written in place twice within one timestamp (a coarse file
	// system), the second time after the watcher read the first: read
	// again, as the first reading was too close to its mtime to trust.
	now := f.clk.Now()
	f.write("models: {c: {cmd: x}}\n")
	os.Chtimes(f.path, now, now)
	f.expect("written in place", false, true)
	f.write("models: {d: {cmd: x}}\n")
	os.Chtimes(f.path, now, now)
	f.expect("written again in the same second", false, true, false, false)

	// Half written, then finished before the next poll: one reload, of
	// the finished file.
	f.write("models: {e: {cmd")
	f.expect("half written", false)
	f.write("models: {e: {cmd: x}}\n")
	f.expect("finished", false, true, false)

	// Half written and left so for an interval: its reload is due (and
	// refused by the reload), once, not again at every poll; the finished
	// file is one more.
	f.write("models: {f: {cmd")
	f.expect("half written and left", false, true, false, false)
	f.write("models: {f: {cmd: x}}\n")
	f.expect("finished later", false, true, false)

	// Changed and changed back before it held still: no reload.
	f.write("models: {g: {cmd: x}}\n")
	f.expect("changed", false)
	f.write("models: {f: {cmd: x}}\n")
	f.expect("changed back", false, false, false)

	// Missing for a while: no reload, one warning. Back as it was: no
	// reload; back changed: one.
	os.Remove(f.path)
	f.expect("missing", false, false, false)
	f.write("models: {f: {cmd: x}}\n")
	f.expect("back as it was", false, false)
	os.Remove(f.path)
	f.expect("missing again", false, false)
	f.write("models: {h: {cmd: x}}\n")
	f.expect("back changed", false, true, false)
	if n := f.logs.FilterMessageSnippet("is missing").Len(); n != 2 {
		t.Errorf("%d warnings for two absences, want 2", n)
	}
	if n := f.logs.FilterMessageSnippet("can be read again").Len(); n != 2 {
		t.Errorf("%d notes of the file's return, want 2", n)
	}
	for _, e := range f.logs.All() {
		for _, field := range e.Context {
			if strings.Contains(field.String, "models:") {
				t.Errorf("the file's contents in a log line: %s %v", e.Message, e.Context)
			}
		}
	}
}

// TestConfigWatchFollowsSymlinks: the file is the link's target, and a
// link pointed elsewhere is a change.
func TestConfigWatchFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		os.Mkdir(filepath.Join(dir, v), 0o755)
		os.WriteFile(filepath.Join(dir, v, "config.yaml"), []byte("models: {"+v+": {cmd: x}}\n"), 0o644)
	}
	os.Symlink("v1", filepath.Join(dir, "..data"))
	path := filepath.Join(dir, "config.yaml")
	os.Symlink(filepath.Join("..data", "config.yaml"), path)
	clk := clock.NewFake(time.Now())
	w := newConfigWatch(path, time.Second, clk)
	log := zap.NewNop()
	poll := func() bool { clk.Advance(time.Second); return w.poll(log) }
	if poll() || poll() {
		t.Error("a reload with nothing changed")
	}
	os.Symlink("v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if got := []bool{poll(), poll(), poll()}; !equalBools(got, []bool{false, true, false}) {
		t.Errorf("link moved: reloads %v, want [false true false]", got)
	}
}

// TestConfigWatchRunStopsWithItsContext: run asks for a reload from its
// own goroutine, and returns once its context is done.
func TestConfigWatchRunStopsWithItsContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(path, []byte("models: {a: {cmd: x}}\n"), 0o644)
	clk := clock.NewFake(time.Now())
	w := newConfigWatch(path, time.Second, clk)
	ctx, cancel := context.WithCancel(context.Background())
	reloads := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, zap.NewNop(), func() { reloads <- struct{}{} })
	}()
	os.WriteFile(path, []byte("models: {b: {cmd: x}}\n"), 0o644)
	for range 2 { // seen, then held still
		if !clk.BlockUntil(1, 5*time.Second) {
			t.Fatal("run is not waiting for its next poll")
		}
		clk.Advance(time.Second)
	}
	select {
	case <-reloads:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload asked for")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run outlived its context")
	}
	if len(reloads) != 0 {
		t.Errorf("%d more reloads for one change", len(reloads))
	}
}
