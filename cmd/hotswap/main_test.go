package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// bins holds the binaries built for these tests.
type bins struct{ hotswap, mock string }

// built are this package's binaries, built once for all its tests by
// TestMain (each go build, even from the cache, takes seconds).
var (
	built    bins
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hotswap-cmd-test")
	if err != nil {
		panic(err)
	}
	built.hotswap, built.mock, buildErr = mocktest.BuildPair(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build returns the binaries, and checks when the test ends that no mock
// backend is left running.
func build(t testing.TB) bins {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	hs, mock := built.hotswap, built.mock
	t.Cleanup(func() {
		if left := mocktest.Leftovers(mock, 5*time.Second); len(left) > 0 {
			t.Errorf("mock backends left running: %v", left)
		}
	})
	return bins{hs, mock}
}

func writeConfig(t testing.TB, b bins, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "MOCK", b.mock)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var listening = regexp.MustCompile(`hotswap listening\s+\{"addr": "([^"]+)"`)

// start runs hotswap and returns its process and base URL.
func start(t *testing.T, b bins, config string) (*exec.Cmd, string) {
	t.Helper()
	cmd, url, _ := startLogged(t, b, config)
	return cmd, url
}

// logBuffer collects hotswap's log as it is written.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line)
	l.b.WriteByte('\n')
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLogged is start, also returning hotswap's log. With wrap, hotswap
// is run by that command (wrap's arguments, then hotswap's).
func startLogged(t testing.TB, b bins, config string, wrap ...string) (*exec.Cmd, string, *logBuffer) {
	t.Helper()
	// Learned footprints go to a state file; keep it out of the user's.
	return launch(t, b, config, t.TempDir(), wrap...)
}

// launch is startLogged with the state directory given: hotswap keeps
// footprints and the remembered mode there, across restarts.
func launch(t testing.TB, b bins, config, stateHome string, wrap ...string) (*exec.Cmd, string, *logBuffer) {
	t.Helper()
	argv := append(wrap, b.hotswap, "-config", config, "-listen", "127.0.0.1:0")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+stateHome)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	scanned := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		select {
		case <-scanned:
		case <-time.After(5 * time.Second):
		}
		// Under go test -race, hotswap has the race detector too.
		if strings.Contains(logs.String(), "WARNING: DATA RACE") {
			t.Errorf("hotswap had a data race:\n%s", logs.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			logs.add(sc.Text())
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, "http://" + a, logs
	case <-time.After(20 * time.Second):
		t.Fatal("hotswap did not say where it listens")
	}
	return nil, "", nil
}

const twoModels = `
ports: 22000-22999
stop_timeout: 2s
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL} -ignore-sigterm"}
`

// chat starts the model's backend through hotswap and returns its pid.
func chat(t *testing.T, url, model string) int {
	t.Helper()
	return client{t, url, ""}.chat(model)
}

// TestSIGKILLTakesBackendsAlong is the case hand-run scripts get wrong: the
// proxy dies without a chance to clean up, and its backends must not keep
// holding memory.
func TestSIGKILLTakesBackendsAlong(t *testing.T) {
	b := build(t)
	cmd, url := start(t, b, writeConfig(t, b, twoModels))
	// b ignores SIGTERM, so only the kernel's death signal can end it.
	pid := chat(t, url, "b")
	if !mocktest.Alive(pid) {
		t.Fatal("backend not running")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(pid) }) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("backend %d outlived hotswap", pid)
	}
}

func TestSIGTERMStopsBackendsAndExitsCleanly(t *testing.T) {
	b := build(t)
	cmd, url := start(t, b, writeConfig(t, b, twoModels))
	pid := chat(t, url, "a")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	if mocktest.Alive(pid) {
		t.Errorf("backend %d survived hotswap's shutdown", pid)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	// check looks the program up: sh is on every PATH.
	os.WriteFile(good, []byte("models:\n  a:\n    cmd: sh -c x --port ${PORT}\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: [\nmodels:\n"), 0o644)
	picker := filepath.Join(dir, "picker.yaml")
	os.WriteFile(picker, []byte("listen: 127.0.0.1:8080\nendpoint_picker: {listen: 127.0.0.1:8080, leave: soon}\nmodels:\n  a:\n    cmd: sh -c x --port ${PORT}\n"), 0o644)
	typos := filepath.Join(dir, "typos.yaml")
	os.WriteFile(typos, []byte("stop_timeot: 1s\nmodels:\n  a:\n    cmd: x --port ${PORT}\n    memory: {ram: 6XB}\n"), 0o644)

	cases := []struct {
		path    string
		code    int
		mention []string
	}{
		{good, 0, []string{"ok, 1 model\n"}},
		{bad, 1, []string{"bad.yaml"}},
		{typos, 1, []string{"stop_timeot", "models.a.memory.ram"}},
		{picker, 1, []string{"endpoint_picker.listen: 127.0.0.1:8080 is the main listener's address", "endpoint_picker.leave"}},
		{filepath.Join(dir, "missing.yaml"), 1, []string{"missing.yaml"}},
	}
	for _, c := range cases {
		var out bytes.Buffer
		code := run([]string{"check", "-config", c.path}, &out)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d\n%s", c.path, code, c.code, &out)
		}
		for _, m := range c.mention {
			if !strings.Contains(out.String(), m) {
				t.Errorf("%s: output does not mention %q:\n%s", c.path, m, &out)
			}
		}
	}
	if code := run([]string{"-nope"}, io.Discard); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
	for _, arg := range []string{"version", "-version"} {
		var out bytes.Buffer
		if code := run([]string{arg}, &out); code != 0 || !strings.HasPrefix(out.String(), "hotswap ") ||
			!strings.Contains(out.String(), "NVML") || !strings.Contains(out.String(), runtime.Version()) {
			t.Errorf("%s: exit %d, %q", arg, code, out.String())
		}
	}
}

func TestPreload(t *testing.T) {
	b := build(t)
	cmd, url := start(t, b, writeConfig(t, b, `
ports: 22000-22999
models:
  early:
    cmd: MOCK -port ${PORT} -model ${MODEL}
    preload: true
  late:
    cmd: MOCK -port ${PORT} -model ${MODEL}
`))
	state := func(model string) string {
		resp, err := http.Get(url + "/v1/models/" + model)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		var m struct {
			State string `json:"state"`
		}
		json.NewDecoder(resp.Body).Decode(&m)
		return m.State
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return state("early") == "ready" }) {
		t.Fatalf("preloaded model is %q", state("early"))
	}
	if s := state("late"); s != "stopped" {
		t.Errorf("late is %q without a request", s)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// TestSIGKILLTakesTheBackendsChildrenAlong: a backend started through a
// shell that leaves a child of its own holding memory (as vLLM's workers,
// or any wrapper script's). Killing hotswap with SIGKILL must take the
// child too, not only the process hotswap started. (The child writes
// nowhere hotswap reads: one that does dies of SIGPIPE on its own.)
func TestSIGKILLTakesTheBackendsChildrenAlong(t *testing.T) {
	b := build(t)
	marker := filepath.Join(t.TempDir(), "child")
	cfg := writeConfig(t, b, `
ports: 22000-22999
models:
  family:
    cmd: [/bin/sh, -c, "MOCK -listen 127.0.0.1:0 -model child -hold 32MiB -progress-interval 0 >/dev/null 2>&1 & echo $! > `+marker+`; exec MOCK -port ${PORT} -model ${MODEL}"]
`)
	cmd, url := start(t, b, cfg)
	leader := chat(t, url, "family")
	raw, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if !mocktest.Alive(child) || !mocktest.Alive(leader) {
		t.Fatalf("child %d alive %v, backend %d alive %v", child, mocktest.Alive(child), leader, mocktest.Alive(leader))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(child) && !mocktest.Alive(leader) }) {
		childAlive, leaderAlive := mocktest.Alive(child), mocktest.Alive(leader)
		syscall.Kill(child, syscall.SIGKILL)
		t.Fatalf("after kill -9 of hotswap: child %d alive %v, backend %d alive %v", child, childAlive, leader, leaderAlive)
	}
}
