package process_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/process"
)

// stopRecord records what a stop command was given and said.
type stopRecord struct {
	mu     sync.Mutex
	pids   []int
	lines  []string
	failed []error
}

func (r *stopRecord) command(argv ...string) *process.StopCommand {
	return &process.StopCommand{
		Argv: func(pid int) []string {
			r.mu.Lock()
			r.pids = append(r.pids, pid)
			r.mu.Unlock()
			return append(append([]string(nil), argv...), strconv.Itoa(pid))
		},
		Output: func(line string) { r.mu.Lock(); r.lines = append(r.lines, line); r.mu.Unlock() },
		Failed: func(err error) { r.mu.Lock(); r.failed = append(r.failed, err); r.mu.Unlock() },
	}
}

func (r *stopRecord) get() (pids []int, lines []string, failed []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.pids...), append([]string(nil), r.lines...), append([]error(nil), r.failed...)
}

// trapINT is a backend that ends cleanly on SIGINT and ignores SIGTERM:
// only its stop command (or SIGKILL) ends it.
var trapINT = []string{"/bin/sh", "-c", `trap "echo got INT; exit 0" INT; trap "" TERM; echo up; sleep 1000 & wait`}

// TestStopCommandRunsInPlaceOfSIGTERM: a backend with a stop command is
// stopped by it, given the backend's pid, its output handed on.
func TestStopCommandRunsInPlaceOfSIGTERM(t *testing.T) {
	var rec stopRecord
	p := start(t, starter(t), process.Spec{Argv: trapINT,
		Stop: rec.command("/bin/sh", "-c", `echo "stopping $0"; kill -INT "$0"`)})
	firstLine(t, p)
	begun := time.Now()
	p.Stop(10 * time.Second)
	if d := time.Since(begun); d > 5*time.Second {
		t.Errorf("stopped after %v: the stop command did not stop it", d)
	}
	if err := p.ExitErr(); err != nil {
		t.Errorf("backend %s, want its own clean exit on SIGINT", process.DescribeExit(err))
	}
	pids, lines, failed := rec.get()
	want := "stopping " + strconv.Itoa(p.Pid())
	if len(pids) != 1 || pids[0] != p.Pid() || len(lines) != 1 || lines[0] != want || len(failed) != 0 {
		t.Errorf("stop command given pids %v (backend %d), wrote %q (want %q), failed %v", pids, p.Pid(), lines, want, failed)
	}
	p.Stop(time.Second) // again: returns at once, runs nothing
	if pids, _, _ := rec.get(); len(pids) != 1 {
		t.Errorf("stop command run %d times", len(pids))
	}
}

// TestStopCommandFailureFallsBackToSignals: a stop command that fails,
// cannot start or hangs is reported (without its arguments) and the
// backend gets SIGTERM, then SIGKILL, within the stop timeout.
func TestStopCommandFailureFallsBackToSignals(t *testing.T) {
	s := starter(t)
	polite := []string{"/bin/sh", "-c", "echo up; exec sleep 1000"}
	stubborn := []string{"/bin/sh", "-c", `trap "" TERM; echo up; exec sleep 1000`}
	for _, c := range []struct {
		name    string
		backend []string
		stop    []string
		failed  string // in the error
		exit    string // the backend's
		timeout time.Duration
	}{
		{"fails", polite, []string{"/bin/sh", "-c", "echo no such container >&2; exit 3"}, "exit status 3", "signal 15", 10 * time.Second},
		{"missing", polite, []string{"/nonexistent/secret-stopper"}, "could not start", "signal 15", 10 * time.Second},
		{"hangs", polite, []string{"/bin/sh", "-c", "echo $$; exec sleep 1000"}, "did not finish", "signal 15", 800 * time.Millisecond},
		{"hangs, stubborn", stubborn, []string{"/bin/sh", "-c", "echo $$; exec sleep 1000"}, "did not finish", "signal 9", 800 * time.Millisecond},
	} {
		var rec stopRecord
		p := start(t, s, process.Spec{Argv: c.backend, Stop: rec.command(c.stop...)})
		firstLine(t, p)
		begun := time.Now()
		p.Stop(c.timeout)
		took := time.Since(begun)
		if got := process.DescribeExit(p.ExitErr()); !strings.Contains(got, c.exit) {
			t.Errorf("%s: backend %s, want %s", c.name, got, c.exit)
		}
		// Within the timeout, and a hung command is given all of its part.
		if took > c.timeout+time.Second || c.failed == "did not finish" && took < c.timeout*3/4 {
			t.Errorf("%s: stopped after %v, timeout %v", c.name, took, c.timeout)
		}
		_, lines, failed := rec.get()
		if len(failed) != 1 || !strings.Contains(failed[0].Error(), c.failed) || strings.Contains(failed[0].Error(), "secret") {
			t.Errorf("%s: failure reported %v, want one with %q and no argument", c.name, failed, c.failed)
		}
		if c.failed == "did not finish" {
			// The hung command was killed.
			pid, err := strconv.Atoi(lines[0])
			if err != nil || !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(pid) }) {
				t.Errorf("%s: the stop command (%q) outlived its time", c.name, lines)
			}
		}
		if c.name == "fails" && (len(lines) != 1 || lines[0] != "no such container") {
			t.Errorf("%s: stop command's output %q", c.name, lines)
		}
	}
}

// TestStopCommandRunsForAnExitedProcess: the command runs even when the
// process has already gone, as a container's client may have.
func TestStopCommandRunsForAnExitedProcess(t *testing.T) {
	var rec stopRecord
	p := start(t, starter(t), process.Spec{Argv: []string{"/bin/sh", "-c", "exit 0"},
		Stop: rec.command("/bin/sh", "-c", `echo "stop for $0"`)})
	exited(t, p)
	p.Stop(5 * time.Second)
	if _, lines, failed := rec.get(); len(lines) != 1 || lines[0] != "stop for "+strconv.Itoa(p.Pid()) || len(failed) != 0 {
		t.Errorf("stop command wrote %q, failed %v", lines, failed)
	}
}
