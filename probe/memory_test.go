package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// holderEnv makes TestMemoryHolderProcess, run in a child copy of the test
// binary, hold that many MiB of touched memory until its stdin closes.
const holderEnv = "HOTSWAP_PROBE_HOLD_MIB"

// TestMemoryHolderProcess is not a test: it is the body of the child
// processes the Usage tests measure, run when holderEnv is set.
func TestMemoryHolderProcess(t *testing.T) {
	mib, err := strconv.Atoi(os.Getenv(holderEnv))
	if err != nil {
		return // a normal test run
	}
	buf := make([]byte, mib<<20)
	// Write to every page: untouched pages of a fresh allocation are not
	// resident, so they would not show in RSS.
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	fmt.Println("ready")
	// Hold the memory until the parent closes stdin (or dies).
	_, _ = io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(buf)
	os.Exit(0)
}

// startHolder starts name with args in its own process group, with
// holderEnv=mib, waits for "ready" on its stdout, and kills the whole group
// when the test ends.
func startHolder(t *testing.T, mib int, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), holderEnv+"="+strconv.Itoa(mib))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("holder said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("holder did not get ready: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("holder did not get ready in 30s")
	}
	return cmd
}

// holderArgs runs only the holder "test" in a copy of this test binary.
func holderArgs() []string {
	return []string{"-test.run=^TestMemoryHolderProcess$", "-test.count=1"}
}

func TestDevicesWithoutNVMLIsRAMOnly(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("compares with /proc/meminfo")
	}
	m := NewMemory(nil)
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	devs, err := m.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/dev/nvidia0"); err == nil {
		t.Skip("this machine has an NVIDIA GPU; the test expects none")
	}
	if len(devs) != 1 {
		t.Fatalf("want only RAM on a machine without GPUs, got %+v", devs)
	}
	ram := devs[0]
	if ram.Index != DeviceRAM || ram.Name != "ram" {
		t.Errorf("first device is %+v, want RAM", ram)
	}
	if ram.Free <= 0 || ram.Free > ram.Total {
		t.Errorf("RAM free %d of total %d, want 0 < free <= total", ram.Free, ram.Total)
	}
	memTotal := procMemTotal(t)
	if diff := ram.Total - memTotal; diff < -memTotal/100 || diff > memTotal/100 {
		t.Errorf("RAM total %d, /proc/meminfo says %d", ram.Total, memTotal)
	}
	if m.UnifiedMemory() {
		t.Error("UnifiedMemory is true on linux")
	}
}

// procMemTotal is MemTotal from /proc/meminfo, in bytes.
func procMemTotal(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

func TestNewMemoryLogsWhyThereAreNoGPUs(t *testing.T) {
	if _, err := os.Stat("/dev/nvidia0"); err == nil {
		t.Skip("this machine has an NVIDIA GPU")
	}
	core, logs := observer.New(zapcore.DebugLevel)
	m := NewMemory(zap.New(core))
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	// Asking again must not log again: the reason is logged once, at init.
	for range 3 {
		if _, err := m.Devices(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	entries := logs.All()
	if len(entries) != 1 || entries[0].Level != zapcore.InfoLevel {
		t.Fatalf("want one Info entry, got %+v", entries)
	}
	if reason, _ := entries[0].ContextMap()["reason"].(string); reason == "" {
		t.Errorf("no reason in %+v", entries[0])
	} else {
		t.Logf("logged: %s: %s", entries[0].Message, reason)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	m := NewMemory(nil)
	c, ok := m.(io.Closer)
	if !ok {
		t.Fatal("the real probe does not implement io.Closer")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	devs, err := m.Devices(context.Background())
	if err != nil || len(devs) == 0 || devs[0].Index != DeviceRAM {
		t.Fatalf("Devices after Close: %+v, %v", devs, err)
	}
}

const holdMiB = 100

func TestUsageOfChild(t *testing.T) {
	m := NewMemory(nil)
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	cmd := startHolder(t, holdMiB, os.Args[0], holderArgs()...)
	u, err := m.Usage(context.Background(), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("child uses %d MiB", u.RAM>>20)
	if u.RAM < holdMiB<<20 {
		t.Errorf("child uses %d bytes, want at least %d MiB", u.RAM, holdMiB)
	}
	if len(u.VRAM) != 0 {
		t.Errorf("VRAM %v without a GPU", u.VRAM)
	}
}

func TestUsageCountsGrandchildren(t *testing.T) {
	m := NewMemory(nil)
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	// sh runs the holder in the background and waits: the memory is in a
	// grandchild, as with a launcher script that starts the real server.
	// A background job's stdin is /dev/null, so hand it sh's stdin through
	// fd 3, for the holder to notice when the test closes it.
	script := `exec 3<&0; "$0" "$@" <&3 3<&- & wait`
	cmd := startHolder(t, holdMiB, "sh", append([]string{"-c", script, os.Args[0]}, holderArgs()...)...)
	pids, err := processTree(context.Background(), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) < 2 {
		t.Fatalf("tree of sh is %v, want sh and the holder", pids)
	}
	own, err := m.Usage(context.Background(), pids[len(pids)-1])
	if err != nil {
		t.Fatal(err)
	}
	u, err := m.Usage(context.Background(), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tree %v uses %d MiB, of which the holder %d MiB", pids, u.RAM>>20, own.RAM>>20)
	if u.RAM < holdMiB<<20 {
		t.Errorf("tree uses %d bytes, want at least %d MiB", u.RAM, holdMiB)
	}
	if u.RAM < own.RAM {
		t.Errorf("tree uses %d bytes, less than the holder alone (%d)", u.RAM, own.RAM)
	}
}

func TestUsageOfExitedProcess(t *testing.T) {
	m := NewMemory(nil)
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	_, err := m.Usage(context.Background(), cmd.Process.Pid)
	if !errors.Is(err, ErrNoProcess) {
		t.Fatalf("Usage of exited pid %d: %v, want ErrNoProcess", cmd.Process.Pid, err)
	}
}

func TestUsageOfZombie(t *testing.T) {
	m := NewMemory(nil)
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet: the process has exited but its pid lingers as a
	// zombie until Wait, which it must not count as running.
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for !isZombie(pid) {
		if time.Now().After(deadline) {
			_ = cmd.Wait()
			t.Fatal("child did not exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := m.Usage(context.Background(), pid)
	_ = cmd.Wait()
	if !errors.Is(err, ErrNoProcess) {
		t.Fatalf("Usage of zombie pid %d: %v, want ErrNoProcess", pid, err)
	}
}

// isZombie tells whether pid has exited and awaits reaping (linux only;
// elsewhere it waits a moment and says yes).
func isZombie(pid int) bool {
	if runtime.GOOS != "linux" {
		time.Sleep(time.Second)
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func TestUsageOfInvalidPid(t *testing.T) {
	m := NewMemory(nil)
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	for _, pid := range []int{0, -1} {
		if _, err := m.Usage(context.Background(), pid); !errors.Is(err, ErrNoProcess) {
			t.Errorf("Usage(%d): %v, want ErrNoProcess", pid, err)
		}
	}
}

func TestUsageOfSelf(t *testing.T) {
	m := NewMemory(nil)
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	u, err := m.Usage(context.Background(), os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RAM <= 0 {
		t.Errorf("this process uses %d bytes of RAM", u.RAM)
	}
}

// The portable way to list children (pgrep, through gopsutil) must find
// what /proc does: it is what kernels without /proc/<pid>/task/*/children
// and other platforms use.
func TestChildrenBothWays(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("compares with /proc")
	}
	if _, err := exec.LookPath("pgrep"); err != nil {
		t.Skip("no pgrep")
	}
	script := `exec 3<&0; "$0" "$@" <&3 3<&- & wait`
	cmd := startHolder(t, 1, "sh", append([]string{"-c", script, os.Args[0]}, holderArgs()...)...)
	fromProc, ok := procChildren(cmd.Process.Pid)
	if !ok || len(fromProc) != 1 {
		t.Fatalf("procChildren: %v, %v; want one child", fromProc, ok)
	}
	fromPs, err := psChildren(context.Background(), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromPs) != 1 || fromPs[0] != fromProc[0] {
		t.Errorf("psChildren found %v, procChildren %v", fromPs, fromProc)
	}
	// A leaf has no children, which is not an error either way.
	if kids, ok := procChildren(fromProc[0]); !ok || len(kids) != 0 {
		t.Errorf("procChildren of the leaf: %v, %v", kids, ok)
	}
	if kids, err := psChildren(context.Background(), fromProc[0]); err != nil || len(kids) != 0 {
		t.Errorf("psChildren of the leaf: %v, %v", kids, err)
	}
}

// On a machine with an NVIDIA GPU (and its driver), the probe must report
// it after RAM. Skipped elsewhere.
func TestDevicesWithGPU(t *testing.T) {
	if _, err := os.Stat("/dev/nvidiactl"); err != nil {
		t.Skip("no NVIDIA GPU")
	}
	if runtime.GOOS != "linux" || !cgoEnabled() {
		t.Skip("NVML needs linux and cgo")
	}
	core, logs := observer.New(zapcore.DebugLevel)
	m := NewMemory(zap.New(core))
	t.Cleanup(func() { _ = m.(io.Closer).Close() })
	devs, err := m.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range logs.All() {
		t.Logf("logged: %s %v", e.Message, e.ContextMap())
	}
	if len(devs) < 2 {
		t.Fatalf("want RAM and at least one GPU, got %+v", devs)
	}
	for i, d := range devs[1:] {
		t.Logf("%+v", d)
		if d.Index != i || d.Name != "gpu"+strconv.Itoa(i) || d.Model == "" ||
			d.Vendor != VendorNVIDIA || d.VendorIndex != i || d.Unified {
			t.Errorf("device %d is %+v", i+1, d)
		}
		if d.Free <= 0 || d.Free > d.Total {
			t.Errorf("%s free %d of total %d, want 0 < free <= total", d.Name, d.Free, d.Total)
		}
	}
	// Nothing of this test runs on the GPU.
	u, err := m.Usage(context.Background(), os.Getpid())
	if err != nil || len(u.VRAM) != 0 {
		t.Errorf("Usage of this process: %+v, %v", u, err)
	}
}

// cgoEnabled tells whether this binary was built with cgo, as NVML needs.
func cgoEnabled() bool {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "CGO_ENABLED" {
				return s.Value == "1"
			}
		}
	}
	return false
}
