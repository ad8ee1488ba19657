// Package mocktest builds the mock backend for tests and finds the
// processes a test run left behind.
package mocktest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hotswap/hotswap/probe"
)

// Build compiles the main package pkg (a path relative to the module root,
// such as "./cmd/mockbackend") into dir, with the go build flags given,
// and returns the binary's path.
func Build(dir, pkg string, flags ...string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, flags...), pkg)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// RaceFlags are the build flags that give a binary the race detector
// when the tests have it (go test -race): a binary the tests run is then
// checked too.
func RaceFlags() []string {
	if raceEnabled {
		return []string{"-race"}
	}
	return nil
}

// Pids lists the live processes running the binary at exe.
func Pids(exe string) []int { return probe.Running(exe) }

// Alive reports whether pid is a live process.
func Alive(pid int) bool { return probe.Alive(pid) }

// Leftovers waits up to timeout for every process running exe to be gone;
// those still alive then are killed and returned.
func Leftovers(exe string, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		pids := Pids(exe)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually polls cond every 10ms until it is true or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Main builds the mock backend into a temporary directory, stores its path
// in *exe, runs the tests, and fails the run if any mock process outlived
// them or goroutines leaked. Use it as TestMain's body:
//
//	func TestMain(m *testing.M) { os.Exit(mocktest.Main(m, &mockExe)) }
func Main(m *testing.M, exe *string) int {
	dir, err := os.MkdirTemp("", "hotswap-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *exe, err = Build(dir, "./cmd/mockbackend"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	// No backend may outlive the swappers that started it.
	if left := Leftovers(*exe, 5*time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: mock backends left running: %v\n", left)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(IgnoreFasthttp()...); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: leaked goroutines:", err)
			code = 1
		}
	}
	return code
}

// IgnoreFasthttp lists fasthttp's process-wide background goroutines,
// which are not ours to stop: pool cleaners that exit after an idle period
// (the server's worker-pool cleaner sleeps up to 10s after Stop), the
// dialer's address cache cleaner and the Date header ticker.
func IgnoreFasthttp() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	}
}

// BuildPair builds hotswap (with the race detector when the tests have
// it, see RaceFlags) and the mock backend into dir: what the tests that run
// hotswap as its own process need.
func BuildPair(dir string) (hotswap, mock string, err error) {
	if hotswap, err = Build(dir, "./cmd/hotswap", RaceFlags()...); err != nil {
		return "", "", err
	}
	mock, err = Build(dir, "./cmd/mockbackend")
	return hotswap, mock, err
}
