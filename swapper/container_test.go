package swapper_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
)

// TestStopCommandStopsTheBackend: a model's stop command is run in place
// of SIGTERM, with ${PID}, ${PORT} and ${MODEL} expanded: the mock, which
// ignores SIGTERM, ends at once on the SIGINT it sends, long before the
// stop timeout's SIGKILL. A stop command that fails falls back to SIGTERM.
func TestStopCommandStopsTheBackend(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "stopped")
	sw, _ := memSwapper(t, `
stop_timeout: 30s
models:
  boxed:
    cmd: "MOCK -port ${PORT} -model boxed -ignore-sigterm"
    stop: [/bin/sh, -c, 'echo "$0 $1 $2" > `+record+`; kill -INT "$0"', "${PID}", "${PORT}", "${MODEL}"]
  broken:
    cmd: "MOCK -port ${PORT} -model broken"
    stop: [/bin/sh, -c, "echo no such container >&2; exit 1"]
`, nil, nil)
	use(t, sw, "boxed")
	st, _ := sw.Status("boxed")
	begun := time.Now()
	if err := sw.Unload(context.Background(), "boxed", false); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begun); d > 10*time.Second {
		t.Errorf("unloaded after %v: the stop command did not stop it", d)
	}
	if mocktest.Alive(st.Pid) {
		t.Errorf("backend %d still running", st.Pid)
	}
	got, err := os.ReadFile(record)
	if want := strconv.Itoa(st.Pid) + " " + strconv.Itoa(st.Port) + " boxed\n"; err != nil || string(got) != want {
		t.Errorf("stop command was given %q (%v), want %q", got, err, want)
	}

	use(t, sw, "broken")
	st, _ = sw.Status("broken")
	begun = time.Now()
	if err := sw.Unload(context.Background(), "broken", false); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begun); d > 10*time.Second || mocktest.Alive(st.Pid) {
		t.Errorf("after a failed stop command: %v, backend alive %v; want SIGTERM at once", d, mocktest.Alive(st.Pid))
	}
}

// TestCgroupIsMeasured: a model with a cgroup is measured from it (the
// fake here stands for /sys/fs/cgroup): its RAM is the cgroup's working
// set, not what its processes' RSS would say, its VRAM that of the
// processes listed in the cgroup.
func TestCgroupIsMeasured(t *testing.T) {
	cg := filepath.Join(t.TempDir(), "hotswap.slice", "boxed.slice")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"memory.current": strconv.FormatInt(5*gib, 10),
		"memory.stat":    "anon 1\ninactive_file " + strconv.FormatInt(gib, 10) + "\n",
	} {
		if err := os.WriteFile(filepath.Join(cg, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fake := probe.NewFake(mockExe, 16*gib, 8*gib)
	// What the process tree would say: not what is learned.
	fake.Script("boxed", probe.Usage{RAM: gib / 2, VRAM: map[int]int64{0: 2 * gib}})
	// The backend enters its cgroup as a container's would (pids as
	// hotswap sees them), then becomes the mock.
	sw, _ := memSwapper(t, `
models:
  boxed:
    cmd: [/bin/sh, -c, 'echo $$ > `+cg+`/cgroup.procs; exec MOCK -port ${PORT} -model boxed']
    memory: {ram: 1GiB, vram: 1GiB}
    cgroup: `+strings.Replace(cg, "boxed.slice", "${MODEL}.slice", 1)+`
`, fake, nil)
	use(t, sw, "boxed")
	if !mocktest.Eventually(5*time.Second, func() bool {
		st, _ := sw.Status("boxed")
		return st.Need.RAM == 4*gib && st.Need.VRAM == 2*gib
	}) {
		st, _ := sw.Status("boxed")
		t.Errorf("need %+v, want the cgroup's 4GiB of RAM and its process's 2GiB of VRAM", st.Need)
	}
}
