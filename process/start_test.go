package process_test

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/process"
)

// starter is an ExecStarter closed when the test ends.
func starter(t *testing.T) *process.ExecStarter {
	t.Helper()
	s := &process.ExecStarter{}
	t.Cleanup(func() { s.Close() })
	return s
}

// start starts spec and stops it when the test ends.
func start(t *testing.T, s process.Starter, spec process.Spec) process.Process {
	t.Helper()
	p, err := s.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	return p
}

// exited waits for p to exit.
func exited(t *testing.T, p process.Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("process %d still running", p.Pid())
	}
}

// firstLine waits for p's first line of output.
func firstLine(t *testing.T, p process.Process) string {
	t.Helper()
	var tail []string
	if !mocktest.Eventually(10*time.Second, func() bool { tail = p.Tail(); return len(tail) > 0 }) {
		t.Fatalf("process %d wrote nothing", p.Pid())
	}
	return tail[0]
}

func TestStartRunsArgvWithItsEnvAndNoShell(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	p := start(t, starter(t), process.Spec{
		// A shell would expand $X and end the command at the ';'.
		Argv: []string{"/bin/sh", "-c", `echo "$0" "$X"; echo to stderr >&2`, "a;b $X"},
		Env:  []string{"X=from-env"},
		Output: func(line string) {
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
		},
	})
	exited(t, p)
	if err := p.ExitErr(); err != nil {
		t.Errorf("exit: %v", err)
	}
	want := []string{"a;b $X from-env", "to stderr"}
	if got := p.Tail(); !slices.Equal(got, want) {
		t.Errorf("tail %q, want %q", got, want)
	}
	// Tail has waited for the pipe to be read to its end: Output has
	// been called for every line.
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(lines, want) {
		t.Errorf("output %q, want %q", lines, want)
	}
}

func TestStartRefusesAnEmptyCommandAndReportsAMissingProgram(t *testing.T) {
	s := starter(t)
	if _, err := s.Start(process.Spec{}); err == nil {
		t.Error("an empty command started")
	}
	if _, err := s.Start(process.Spec{Argv: []string{"/nonexistent/backend"}}); err == nil {
		t.Error("a missing program started")
	}
}

func TestTailKeepsTheLastLinesAndWroteWakes(t *testing.T) {
	p := start(t, starter(t), process.Spec{Argv: []string{"/bin/sh", "-c", "for i in $(seq 1 30); do echo $i; done; exit 3"}})
	select {
	case <-p.Wrote():
	case <-time.After(10 * time.Second):
		t.Fatal("Wrote never fired")
	}
	exited(t, p)
	var want []string
	for i := 11; i <= 30; i++ {
		want = append(want, strconv.Itoa(i))
	}
	if got := p.Tail(); !slices.Equal(got, want) {
		t.Errorf("tail %q, want %q", got, want)
	}
	if got := process.DescribeExit(p.ExitErr()); got != "exit status 3" {
		t.Errorf("exit %q", got)
	}
	if time.Since(p.LastOutput()) > time.Minute {
		t.Errorf("last output %v", p.LastOutput())
	}
}

func TestStopSendsSIGTERMThenSIGKILL(t *testing.T) {
	s := starter(t)
	polite := start(t, s, process.Spec{Argv: []string{"/bin/sh", "-c", "echo up; exec sleep 1000"}})
	// An ignored signal stays ignored across exec: sleep ignores SIGTERM.
	stubborn := start(t, s, process.Spec{Argv: []string{"/bin/sh", "-c", `trap "" TERM; echo up; exec sleep 1000`}})
	firstLine(t, polite)
	firstLine(t, stubborn)

	polite.Stop(10 * time.Second)
	if got := process.DescribeExit(polite.ExitErr()); !strings.Contains(got, "signal 15") {
		t.Errorf("polite backend: %s, want SIGTERM", got)
	}
	begun := time.Now()
	stubborn.Stop(200 * time.Millisecond)
	if got := process.DescribeExit(stubborn.ExitErr()); !strings.Contains(got, "signal 9") {
		t.Errorf("stubborn backend: %s, want SIGKILL", got)
	}
	if d := time.Since(begun); d < 200*time.Millisecond {
		t.Errorf("SIGKILL after %v, before the timeout", d)
	}
	stubborn.Stop(time.Second) // again: returns at once
}

// TestStopTakesTheGroup: what a backend spawned (vLLM's workers, a wrapper
// script's child) goes with it, whether it is stopped or dies on its own.
func TestStopTakesTheGroup(t *testing.T) {
	s := starter(t)
	for _, stop := range []bool{true, false} {
		// The child writes nowhere we read, so no SIGPIPE ends it for us.
		p := start(t, s, process.Spec{Argv: []string{"/bin/sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!; exec sleep 1000"}})
		child, err := strconv.Atoi(firstLine(t, p))
		if err != nil || !mocktest.Alive(child) {
			t.Fatalf("child %d (%v) not running", child, err)
		}
		if stop {
			p.Stop(10 * time.Second)
		} else {
			// The leader alone dies, as a crashed backend does.
			syscall.Kill(p.Pid(), syscall.SIGKILL)
			exited(t, p)
		}
		if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(child) }) {
			syscall.Kill(child, syscall.SIGKILL)
			t.Errorf("stop %v: the backend's child %d outlived it", stop, child)
		}
	}
}
