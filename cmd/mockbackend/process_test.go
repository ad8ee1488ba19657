package main

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mainEnv, set to 1, makes the test binary run the command instead of the
// tests (see TestMain), so that process tests need no separate build.
const mainEnv = "MOCKBACKEND_TEST_RUN_MAIN"

// proc is the command running as a child process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{} // closed when it has exited
	err    error         // its exit, once done is closed
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], args...)
	// Under -race, a process lingers a second at exit unless told not to.
	p.cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// addr waits for the "ready on ADDR" line and returns ADDR.
func (p *proc) addr() string {
	p.t.Helper()
	re := regexp.MustCompile(`ready on (\S+)`)
	var m []string
	eventually(p.t, "the ready line", func() bool {
		m = re.FindStringSubmatch(p.stdout.String())
		return m != nil
	})
	return m[1]
}

// exitCode waits up to 5s for the process to exit and returns its status.
func (p *proc) exitCode() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.t.Fatalf("still running; stdout %q stderr %q", p.stdout.String(), p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

func TestProcessSIGTERM(t *testing.T) {
	p := startProc(t, "-listen", "127.0.0.1:0")
	p.addr()
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(); code != 0 || !strings.Contains(p.stdout.String(), "shutting down\n") {
		t.Errorf("status %d, stdout %q", code, p.stdout.String())
	}
	if took := time.Since(sent); took > time.Second {
		t.Errorf("took %s to exit", took)
	}
}

func TestProcessIgnoresSIGTERM(t *testing.T) {
	p := startProc(t, "-listen", "127.0.0.1:0", "-ignore-sigterm")
	addr := p.addr()
	// The kernel says SIGTERM is ignored (SigIgn is a mask, bit 0 being
	// signal 1), so it is discarded on delivery rather than handled late.
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`SigIgn:\s*([0-9a-f]+)`).FindSubmatch(status)
	mask, _ := strconv.ParseUint(string(m[1]), 16, 64)
	if mask&(1<<(syscall.SIGTERM-1)) == 0 {
		t.Fatalf("SIGTERM not ignored: SigIgn %s", m[1])
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	// And after it, it still answers.
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	resp.Body.Close()
	select {
	case <-p.done:
		t.Fatalf("exited on SIGTERM: %v", p.err)
	default:
	}
	p.cmd.Process.Kill()
	if code := p.exitCode(); code != -1 { // killed by a signal
		t.Errorf("status %d after SIGKILL", code)
	}
}

func TestProcessFailStart(t *testing.T) {
	p := startProc(t, "-listen", "127.0.0.1:0", "-fail-start", "-startup", "50ms", "-model", "m")
	if code := p.exitCode(); code != 1 || !strings.Contains(p.stderr.String(), "error: failed to load model m: out of memory (mock)") {
		t.Errorf("status %d, stderr %q", code, p.stderr.String())
	}
}

func TestProcessCrashAfter(t *testing.T) {
	p := startProc(t, "-listen", "127.0.0.1:0", "-crash-after", "1")
	addr := p.addr()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if resp, err := client.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(`{}`)); err == nil {
		resp.Body.Close()
		t.Errorf("answered %d", resp.StatusCode)
	}
	if code := p.exitCode(); code != 3 {
		t.Errorf("status %d", code)
	}
}

// TestProcessHold checks that -hold memory is resident, as hotswap's
// memory accounting needs it to be.
func TestProcessHold(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	const hold = 64 << 20
	p := startProc(t, "-listen", "127.0.0.1:0", "-hold", "64MiB")
	p.addr()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no VmRSS in\n%s", status)
	}
	if rss, _ := strconv.Atoi(string(m[1])); rss*1024 < hold {
		t.Errorf("RSS %d kB, want at least %d kB", rss, hold/1024)
	}
}
