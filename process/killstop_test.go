package process_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/process"
)

// TestStopKillSendsSIGKILLAtOnce: with Spec.Kill the group gets SIGKILL in
// place of SIGTERM (the backend's TERM trap never runs), and a stop
// command still wins over it; one that fails is followed by SIGKILL.
func TestStopKillSendsSIGKILLAtOnce(t *testing.T) {
	s := starter(t)
	// Exits cleanly on TERM, saying so; only SIGKILL ends it otherwise.
	termClean := []string{"/bin/sh", "-c", `trap "echo got TERM; exit 0" TERM; echo up; sleep 1000 & wait`}
	for _, c := range []struct {
		name string
		spec process.Spec
		exit string
	}{
		{"term", process.Spec{Argv: termClean}, "exit status 0"},
		{"kill", process.Spec{Argv: termClean, Kill: true}, "signal 9"},
		{"kill, stop command wins", process.Spec{Argv: trapINT, Kill: true,
			Stop: new(stopRecord).command("/bin/sh", "-c", `kill -INT "$0"`)}, "exit status 0"},
		{"kill, stop command fails", process.Spec{Argv: termClean, Kill: true,
			Stop: new(stopRecord).command("/bin/sh", "-c", "exit 3")}, "signal 9"},
	} {
		p := start(t, s, c.spec)
		firstLine(t, p)
		// A timeout no test waits out: SIGKILL, if any, came from Kill.
		p.Stop(time.Hour)
		if got := process.DescribeExit(p.ExitErr()); !strings.Contains(got, c.exit) {
			t.Errorf("%s: backend %s, want %s", c.name, got, c.exit)
		}
		got := strings.Join(p.Tail(), "\n")
		if saw := strings.Contains(got, "got TERM"); saw != (c.name == "term") {
			t.Errorf("%s: backend's output %q: TERM trap ran %v", c.name, got, saw)
		}
	}
}
