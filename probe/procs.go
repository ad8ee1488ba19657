package probe

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Alive reports whether pid is a live process: not exited, not a zombie.
func Alive(pid int) bool { return alive(context.Background(), pid) }

// Running lists the live processes executing the binary at exe. It reads
// /proc, so it finds none where there is no /proc.
func Running(exe string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && runs(pid, exe) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// runs reports whether pid is a live process executing exe.
func runs(pid int, exe string) bool {
	target, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	return err == nil && strings.TrimSuffix(target, " (deleted)") == exe && Alive(pid)
}
