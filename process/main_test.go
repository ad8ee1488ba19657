package process_test

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/hotswap/hotswap/process"
)

// TestMain also lets the test binary play two programs for the tests that
// need a process to kill: "TEST guard" does what "hotswap guard" does, and
// "TEST starter" starts a backend as hotswap does ("TEST starter guard":
// with a guard), prints the pids of the backend and of the child it
// spawned, and runs until its standard input ends or it is killed.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "guard":
			if err := process.GuardGroups(os.Stdin); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		case "starter":
			os.Exit(starterMain(len(os.Args) > 2 && os.Args[2] == "guard"))
		}
	}
	goleak.VerifyTestMain(m)
}

func starterMain(guard bool) int {
	s := &process.ExecStarter{}
	if guard {
		s.Guard = []string{os.Args[0], "guard"}
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
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
