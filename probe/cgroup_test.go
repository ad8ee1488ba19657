package probe_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/hotswap/hotswap/probe"
)

// treeMemory is a Memory whose Usage gives each pid asked about, and the
// processes below it, 1GiB of RAM and of GPU 0 per process, and records
// whom it was asked about.
type treeMemory struct {
	below map[int][]int
	mu    sync.Mutex
	asked []int
}

func (m *treeMemory) Devices(context.Context) ([]probe.Device, error) { return nil, nil }
func (m *treeMemory) UnifiedMemory() bool                             { return false }
func (m *treeMemory) Usage(_ context.Context, pid int) (probe.Usage, error) {
	m.mu.Lock()
	m.asked = append(m.asked, pid)
	m.mu.Unlock()
	n := int64(1+len(m.below[pid])) << 30
	return probe.Usage{RAM: n, VRAM: map[int]int64{0: n}}, nil
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// spawn runs /bin/sh with script until the test ends, and returns its pid
// and its first line.
func spawn(t *testing.T, script string) (int, string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	return cmd.Process.Pid, line[:max(0, len(line)-1)]
}

// TestCgroupUsage: a backend in a cgroup (a container) is measured from
// it: its RAM is the cgroup's working set (memory.current less
// inactive_file), whatever the processes' RSS; its GPU memory is that of
// the processes in it and in the cgroups below it, each counted once.
func TestCgroupUsage(t *testing.T) {
	// a runs a child of its own, b is apart, in a cgroup below.
	a, kid := spawn(t, "sleep 1000 >/dev/null & echo $!; wait")
	b, _ := spawn(t, "echo up; exec sleep 1000")
	child, err := strconv.Atoi(kid)
	if err != nil {
		t.Fatalf("child pid %q", kid)
	}
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"hotswap.slice/docker-abc.scope/memory.current": "314572800\n", // 300MiB
		"hotswap.slice/docker-abc.scope/memory.stat":    "anon 104857600\nfile 209715200\nactive_file 104857600\ninactive_file 104857600\n",
		// A pid that is gone is no one's.
		"hotswap.slice/docker-abc.scope/cgroup.procs":         strconv.Itoa(a) + "\n" + kid + "\n999999999\n",
		"hotswap.slice/docker-abc.scope/payload/cgroup.procs": strconv.Itoa(b) + "\n",
	})
	m := &treeMemory{below: map[int][]int{a: {child}}}
	u, err := probe.CgroupUsage(context.Background(), m, root, "hotswap.slice/docker-abc.scope")
	if err != nil {
		t.Fatal(err)
	}
	if u.RAM != 200<<20 {
		t.Errorf("RAM %d, want the working set, 200MiB", u.RAM)
	}
	// a and its child: 2GiB; b: 1GiB. The child is not asked about.
	if u.VRAM[0] != 3<<30 {
		t.Errorf("VRAM %v, want 3GiB on GPU 0", u.VRAM)
	}
	slices.Sort(m.asked)
	if want := []int{min(a, b), max(a, b)}; !slices.Equal(m.asked, want) {
		t.Errorf("asked about %v, want %v (the processes at the top of the cgroup)", m.asked, want)
	}

	// An absolute path is taken as it is; without memory.stat, RAM is
	// memory.current.
	abs := filepath.Join(root, "abs")
	writeFiles(t, abs, map[string]string{"memory.current": "4096\n", "cgroup.procs": ""})
	cg, err := probe.ReadCgroup("/nonexistent", abs)
	if err != nil || cg.RAM != 4096 || len(cg.Pids) != 0 || cg.Dir != abs {
		t.Errorf("absolute cgroup: %+v, %v", cg, err)
	}
}

// TestCgroupMissing: a cgroup not (yet) there is ErrNoCgroup; a directory
// without the memory controller's files says so.
func TestCgroupMissing(t *testing.T) {
	root := t.TempDir()
	if _, err := probe.ReadCgroup(root, "system.slice/docker-gone.scope"); !errors.Is(err, probe.ErrNoCgroup) {
		t.Errorf("missing cgroup: %v, want ErrNoCgroup", err)
	}
	if err := os.Mkdir(filepath.Join(root, "nomem"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := probe.ReadCgroup(root, "nomem"); err == nil || errors.Is(err, probe.ErrNoCgroup) {
		t.Errorf("cgroup without memory.current: %v", err)
	}
}
