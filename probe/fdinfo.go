package probe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DRM client memory, read from /proc/PID/fdinfo/FD as the kernel's "DRM
// client usage stats" specify (Documentation/gpu/drm-usage-stats.rst):
//
//	drm-driver:      amdgpu
//	drm-pdev:        0000:03:00.0
//	drm-client-id:   7
//	drm-memory-vram: 1024 KiB        (older amdgpu; an alias of drm-resident-)
//	drm-total-vram0: 23992 KiB       (newer drivers: xe, i915, amdgpu)
//	drm-resident-vram0: 23992 KiB
//
// Every fd a process has open on a DRM device has such a file, and one
// client (one open of the device) can sit behind several fds (dup, fork),
// so clients are counted once per (drm-pdev, drm-client-id).

// drmClient is one DRM client's memory.
type drmClient struct {
	driver string
	pdev   string // PCI slot, e.g. "0000:03:00.0"
	id     string // drm-client-id, unique per device
	// regions holds the bytes resident in each memory region ("vram",
	// "gtt", "vram0", "local0", "system0"...).
	regions map[string]int64
}

// clientKey identifies one DRM client across processes and fds.
type clientKey struct{ pdev, id string }

// parseFDInfo reads one fdinfo file. ok is false, with no error, for an fd
// that is not a DRM client (no drm-driver or drm-client-id): fdinfo of a
// socket or plain file has neither. A DRM client with a malformed number is
// an error, so that a bad file is reported rather than half counted.
func parseFDInfo(b []byte) (c drmClient, ok bool, err error) {
	// Per region, the figure from the most preferred key seen so far.
	type figure struct {
		rank  int
		bytes int64
	}
	best := map[string]figure{}
	// The per-region memory keys, most preferred first: what is resident
	// in a region is what it takes there. drm-memory- is the older name of
	// drm-resident- (the spec says only one of the two is printed);
	// drm-total- counts what the client allocated, resident or not, and is
	// the last resort for a driver that prints nothing else.
	memKeys := [...]string{"drm-resident-", "drm-memory-", "drm-total-"}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, found := strings.Cut(sc.Text(), ":")
		if !found {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "drm-driver":
			c.driver = val
			continue
		case "drm-pdev":
			c.pdev = val
			continue
		case "drm-client-id":
			c.id = val
			continue
		}
		// drm-total-cycles-<engine> shares drm-total-'s prefix but counts
		// GPU time, not memory.
		if strings.HasPrefix(key, "drm-total-cycles-") {
			continue
		}
		for rank, prefix := range memKeys {
			region, isMem := strings.CutPrefix(key, prefix)
			if !isMem || region == "" {
				continue
			}
			n, err := parseMemValue(val)
			if err != nil {
				return drmClient{}, false, fmt.Errorf("%s: %w", key, err)
			}
			if f, seen := best[region]; !seen || rank < f.rank {
				best[region] = figure{rank: rank, bytes: n}
			}
			break
		}
	}
	if err := sc.Err(); err != nil {
		return drmClient{}, false, err
	}
	if c.driver == "" || c.id == "" {
		return drmClient{}, false, nil
	}
	c.regions = make(map[string]int64, len(best))
	for region, f := range best {
		c.regions[region] = f.bytes
	}
	return c, true, nil
}

// parseMemValue reads "<uint> [KiB|MiB|GiB]": bytes by default, as the spec
// says (it names KiB and MiB; GiB is accepted too, for drivers that print
// big figures in it).
func parseMemValue(s string) (int64, error) {
	num, unit, _ := strings.Cut(s, " ")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a byte count: %q", s)
	}
	var shift uint
	switch strings.TrimSpace(unit) {
	case "":
	case "KiB":
		shift = 10
	case "MiB":
		shift = 20
	case "GiB":
		shift = 30
	default:
		return 0, fmt.Errorf("unknown unit in %q", s)
	}
	if n > (1<<63-1)>>shift {
		return 0, fmt.Errorf("too large: %q", s)
	}
	return n << shift, nil
}

// drmClients returns the DRM clients that the processes pids hold open,
// each client once. A process that exited, or whose fds we may not read
// (another user's), contributes nothing. A malformed fdinfo is passed to
// bad and skipped.
func drmClients(procRoot string, pids []int, bad func(path string, err error)) map[clientKey]drmClient {
	clients := map[clientKey]drmClient{}
	for _, pid := range pids {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			// Only fds on a DRM device node (/dev/dri/card*, renderD*)
			// can be DRM clients: reading their link is cheaper than
			// reading every socket's fdinfo.
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(target, "/dev/dri/") {
				continue
			}
			path := filepath.Join(dir, "fdinfo", fd.Name())
			b, err := os.ReadFile(path)
			if err != nil {
				continue // the fd was closed meanwhile
			}
			c, ok, err := parseFDInfo(b)
			if err != nil {
				bad(path, err)
				continue
			}
			if !ok {
				continue
			}
			k := clientKey{pdev: c.pdev, id: c.id}
			if _, seen := clients[k]; !seen {
				clients[k] = c
			}
		}
	}
	return clients
}

// allPids lists the processes under procRoot.
func allPids(procRoot string) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, errors.New("no process listed in " + procRoot)
	}
	return pids, nil
}
