package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// launcher runs a backend as `docker run` runs a container: outside the
// launcher's process tree (a double fork, in a session of its own), in a
// cgroup (its first argument: the backend's shell enters it before it
// becomes the backend), its output streamed back through a FIFO (the
// second), the launcher ending when the backend does. Stopping the
// launcher's process group would leave the backend running: only the
// model's stop command reaches it.
const launcher = `#!/bin/sh
cg=$1 fifo=$2
shift 2
rm -f "$fifo" && mkfifo "$fifo" || exit 1
( setsid /bin/sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@" > "$fifo" 2>&1 & )
exec cat "$fifo"
`

// stopper stops what is in the cgroup (its first argument), as docker
// stop stops a container, and records the rest of its arguments.
const stopper = `#!/bin/sh
cg=$1 record=$2
shift 2
echo "$@" > "$record"
kill -TERM $(cat "$cg/cgroup.procs")
`

// runContainer loads a model whose backend (a mock holding 64MiB) runs
// in the cgroup cg, and unloads it: what it was learned to use comes from
// the cgroup, want says whether it is right; its stop command stopped it,
// given its placeholders; nothing is left running.
func runContainer(t *testing.T, cgDir, cgKey string, want func(need int64) bool) {
	b := build(t)
	dir := t.TempDir()
	for name, text := range map[string]string{"launch": launcher, "stop": stopper} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	record := filepath.Join(dir, "stopped")
	path := writeConfig(t, b, fmt.Sprintf(`
ports: 23000-23999
stop_timeout: 20s
models:
  boxed:
    cmd: [%[1]s/launch, %[2]s, %[1]s/fifo, MOCK, -port, "${PORT}", -model, "${MODEL}", -hold, 64MiB]
    stop: [%[1]s/stop, %[2]s, %[3]s, "${PID}", "${PORT}", "${MODEL}"]
    cgroup: %[4]s
    memory: {ram: 8MiB}
`, dir, cgDir, record, cgKey))
	_, base := start(t, b, path)
	c := client{t, base, ""}
	need := func() int64 { return c.models()["boxed"].NeedRAM }
	c.chat("boxed")
	launched := c.running()["boxed"]
	procs, _ := os.ReadFile(filepath.Join(cgDir, "cgroup.procs"))
	mock, err := strconv.Atoi(strings.TrimSpace(string(procs)))
	if err != nil || !mocktest.Alive(mock) || mock == launched.Pid {
		t.Fatalf("the backend (%q in the cgroup) is not running apart from its launcher %d", procs, launched.Pid)
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return want(need()) }) {
		t.Errorf("boxed is planned with %d bytes", need())
	}
	c.json("POST", "/admin/models/boxed/unload", "", 200, nil)
	if !mocktest.Eventually(10*time.Second, func() bool { return !mocktest.Alive(mock) && !mocktest.Alive(launched.Pid) }) {
		t.Errorf("after unload, the backend %d (alive %v) or its launcher %d (alive %v) runs on",
			mock, mocktest.Alive(mock), launched.Pid, mocktest.Alive(launched.Pid))
	}
	got, err := os.ReadFile(record)
	if want := fmt.Sprintf("%d %d boxed\n", launched.Pid, launched.Port); err != nil || string(got) != want {
		t.Errorf("the stop command was given %q (%v), want %q", got, err, want)
	}
}

// TestContainerInAFakeCgroup: a backend run apart from hotswap's process
// tree, as in a container, whose cgroup is a fake one (the test writes its
// memory figures): what hotswap learns it uses is the cgroup's working set
// (memory.current less inactive_file), not the launcher's few MiB.
func TestContainerInAFakeCgroup(t *testing.T) {
	cg := filepath.Join(t.TempDir(), "boxed.scope")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"memory.current": strconv.Itoa(300 << 20),
		"memory.stat":    fmt.Sprintf("anon %d\nactive_file 0\ninactive_file %d\n", 200<<20, 100<<20),
	} {
		if err := os.WriteFile(filepath.Join(cg, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runContainer(t, cg, strings.Replace(cg, "boxed", "${MODEL}", 1), func(need int64) bool { return need == 200<<20 })
}

// TestContainerInARealCgroup: the same with a cgroup made for the test
// under /sys/fs/cgroup, where the machine lets it: the footprint learned
// is the cgroup's, the mock's 64MiB and its runtime.
func TestContainerInARealCgroup(t *testing.T) {
	name, why := makeCgroup(t)
	if why != "" {
		t.Skip("no cgroup for the test: " + why)
	}
	runContainer(t, filepath.Join("/sys/fs/cgroup", name), name, func(need int64) bool {
		return need >= 64<<20 && need <= 192<<20
	})
}

// makeCgroup makes a cgroup v2 with the memory controller under
// /sys/fs/cgroup, removed when the test ends, or says why it cannot.
func makeCgroup(t *testing.T) (name, why string) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &fs); err != nil {
		return "", err.Error()
	}
	if fs.Type != 0x63677270 { // CGROUP2_SUPER_MAGIC
		return "", "/sys/fs/cgroup is not cgroup v2 (a v1 or hybrid hierarchy)"
	}
	ctl, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
	if err != nil || !bytes.Contains(ctl, []byte("memory")) {
		return "", "the memory controller is not on for /sys/fs/cgroup's children (cgroup.subtree_control)"
	}
	name = fmt.Sprintf("hotswap-test-%d", os.Getpid())
	dir := filepath.Join("/sys/fs/cgroup", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", "cannot make a cgroup there (not root, nor delegated): " + err.Error()
	}
	// Removed once empty: after the checks for leftovers (registered
	// later, run first) have killed what the test may have left.
	t.Cleanup(func() {
		if !mocktest.Eventually(5*time.Second, func() bool { return os.Remove(dir) == nil }) {
			t.Errorf("cgroup %s not removed", dir)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, "memory.current")); err != nil {
		return "", "a new cgroup has no memory.current"
	}
	return name, ""
}
