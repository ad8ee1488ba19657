package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CgroupRoot is where the cgroup v2 hierarchy is mounted; a model's
// cgroup is relative to it unless absolute.
const CgroupRoot = "/sys/fs/cgroup"

// ErrNoCgroup is wrapped by ReadCgroup when the cgroup is not there: the
// container has not started yet, is gone, or the path is wrong (or the
// machine has no cgroup v2 memory controller there).
var ErrNoCgroup = errors.New("no such cgroup")

// Cgroup is what a cgroup (v2) directory says of the processes in it: a
// backend run outside hotswap's process tree, in a container.
type Cgroup struct {
	Dir string
	// RAM is the cgroup's working set: memory.current less the
	// inactive_file of memory.stat, as docker stats and the kubelet count
	// it. memory.current alone counts every page of file cache the
	// container ever read (a model's weights read once from disk count
	// their size again, though the kernel takes that cache back when
	// memory runs short); anon alone would leave out a model's weights
	// mapped from its file (llama.cpp's mmap), which a process's RSS
	// counts. The working set keeps what was touched lately, as RSS does,
	// plus the kernel memory charged to the cgroup (page tables, sockets).
	RAM int64
	// Pids are the processes in the cgroup and in the cgroups below it,
	// as cgroup.procs lists them (pids as hotswap sees them).
	Pids []int
}

// CgroupPath is dir under root (CgroupRoot, or a test's fake tree); an
// absolute dir is taken as it is.
func CgroupPath(root, dir string) string {
	if filepath.IsAbs(dir) {
		return filepath.Clean(dir)
	}
	return filepath.Join(root, dir)
}

// ReadCgroup reads the cgroup dir (see CgroupPath): its working set, and
// the processes in it and below it.
func ReadCgroup(root, dir string) (Cgroup, error) {
	path := CgroupPath(root, dir)
	cg := Cgroup{Dir: path}
	current, err := readInt(filepath.Join(path, "memory.current"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(path); serr == nil {
				return cg, fmt.Errorf("cgroup %s has no memory.current (is it cgroup v2, with the memory controller on for it?)", path)
			}
			return cg, fmt.Errorf("cgroup %s: %w", path, ErrNoCgroup)
		}
		return cg, fmt.Errorf("cgroup %s: %w", path, err)
	}
	cg.RAM = current
	if stat, err := os.ReadFile(filepath.Join(path, "memory.stat")); err == nil {
		if inactive, ok := statField(stat, "inactive_file"); ok {
			cg.RAM = max(0, current-inactive)
		}
	}
	// cgroup.procs lists only the cgroup's own processes: a container's
	// may be in cgroups below it (podman's split, a nested slice).
	seen := map[int]bool{}
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != path && errors.Is(err, fs.ErrNotExist) {
				return nil // a child cgroup removed during the walk
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 && !seen[pid] {
				seen[pid] = true
				cg.Pids = append(cg.Pids, pid)
			}
		}
		return nil
	})
	if err != nil {
		return cg, fmt.Errorf("cgroup %s: processes: %w", path, err)
	}
	return cg, nil
}

// CgroupUsage is what the backend in the cgroup dir uses: RAM from the
// cgroup (see Cgroup.RAM), in place of its process tree's RSS, and GPU
// memory as m finds it used by the processes in it. m is asked about each
// process at the top of the cgroup (whose parent is not in it), which
// covers those below: a process is never counted twice.
func CgroupUsage(ctx context.Context, m Memory, root, dir string) (Usage, error) {
	cg, err := ReadCgroup(root, dir)
	if err != nil {
		return Usage{}, err
	}
	u := Usage{RAM: cg.RAM}
	in := make(map[int]bool, len(cg.Pids))
	for _, pid := range cg.Pids {
		in[pid] = true
	}
	for _, pid := range cg.Pids {
		if ppid, ok := parentPid(pid); !ok || in[ppid] {
			continue // gone, or counted with its parent
		}
		pu, err := m.Usage(ctx, pid)
		if err != nil {
			if errors.Is(err, ErrNoProcess) {
				continue
			}
			return Usage{}, err
		}
		for d, n := range pu.VRAM {
			if u.VRAM == nil {
				u.VRAM = map[int]int64{}
			}
			u.VRAM[d] += n
		}
	}
	return u, nil
}

// parentPid reads pid's parent from /proc; false when pid is gone.
func parentPid(pid int) (int, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// readInt reads a file holding one integer ("max" is not one).
func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// statField finds key's value in a memory.stat ("key value" lines).
func statField(stat []byte, key string) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(stat))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
