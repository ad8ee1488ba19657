package process_test

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/process"
)

// TestMain also lets the test binary play two programs for the tests that
// need a process to kill: "TEST guard" does what "hotswap guard" does
// (also "TEST guard exec ...", the gate, see process/gate.go), and
// "TEST starter" starts a backend as hotswap does ("TEST starter guard":
// with a guard), prints the pids of the backend and of the child it
// spawned, and runs until its standard input ends or it is killed. After
// "starter", "guard" gives it a guard, "darwin" leaves out Pdeathsig as on
// macOS, and "killguard" has it SIGKILL its guard once started, and print
// "revived" once another guard has been started and told its group.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "guard":
			if len(os.Args) > 2 && os.Args[2] == "exec" {
				fmt.Fprintln(os.Stderr, process.GuardExec(os.Args[3:]))
				os.Exit(1)
			}
			if err := process.GuardGroups(os.Stdin); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		case "starter":
			os.Exit(starterMain(os.Args[2:]))
		}
	}
	goleak.VerifyTestMain(m)
}

func starterMain(opts []string) int {
	s := &process.ExecStarter{}
	if slices.Contains(opts, "guard") {
		s.Guard = []string{os.Args[0], "guard"}
	}
	if slices.Contains(opts, "darwin") {
		process.LikeDarwin()
	}
	defer s.Close()
	lines := make(chan string, 1)
	p, err := s.Start(process.Spec{
		// The child writes nowhere hotswap reads: one that does dies of
		// SIGPIPE once hotswap has, guard or no guard.
		Argv: []string{"/bin/sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!; exec sleep 1000"},
		Output: func(line string) {
			select {
			case lines <- line:
			default:
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer p.Stop(0)
	child, err := strconv.Atoi(<-lines)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(p.Pid(), child)
	if slices.Contains(opts, "killguard") {
		old := process.GuardPid(s)
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// The new guard is told the groups before GuardPid shows it.
		if !mocktest.Eventually(10*time.Second, func() bool { n := process.GuardPid(s); return n != 0 && n != old }) {
			fmt.Fprintln(os.Stderr, "no guard started after", old, "was killed")
			return 1
		}
		fmt.Println("revived")
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
