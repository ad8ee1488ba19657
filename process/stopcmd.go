package process

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// maxStopGrace bounds the part of the stop timeout kept from a stop
// command for the SIGTERM that follows it when it fails.
const maxStopGrace = 5 * time.Second

// stopGrace is what of timeout a stop command is not given: a quarter,
// at most maxStopGrace, so that a command that hangs still leaves the
// process a moment to end on SIGTERM before SIGKILL, within the timeout.
func stopGrace(timeout time.Duration) time.Duration {
	return min(timeout/4, maxStopGrace)
}

// runStop runs p's stop command, for at most budget, and reports whether
// it succeeded (ran and exited 0). A failure is told to Failed.
func (p *execProcess) runStop(sc *StopCommand, budget time.Duration) bool {
	err := runStopCommand(sc, p.Pid(), budget)
	if err != nil && sc.Failed != nil {
		sc.Failed(err)
	}
	return err == nil
}

// runStopCommand runs sc for pid and waits for it, for at most budget;
// one still running then is killed with its group.
func runStopCommand(sc *StopCommand, pid int, budget time.Duration) error {
	return RunCommand("stop command", sc.Argv(pid), sc.Output, budget)
}

// RunCommand runs argv, a short command acting on a backend (its stop
// command, its sleep or wake), in a process group of its own, with each
// line it writes told to output (if set), and waits for it for at most
// budget: one still running then is killed with its group, and so is
// whatever it leaves behind once it exits. what names it in errors.
func RunCommand(what string, argv []string, output func(string), budget time.Duration) error {
	if len(argv) == 0 || argv[0] == "" {
		return fmt.Errorf("%s: empty command", what)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("%s: output pipe: %w", what, err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return fmt.Errorf("%s could not start: %w", what, bare(err))
	}
	// Read until every writer is gone; a child it left behind holding the
	// pipe is not waited for, only its lines still logged.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer r.Close()
		sc2 := bufio.NewScanner(r)
		sc2.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc2.Scan() {
			if output != nil {
				output(sc2.Text())
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTimer(budget)
	defer t.Stop()
	select {
	case err := <-done:
		// Whatever it left in its group goes with it, and its last
		// lines are logged before the stop goes on (a moment at most).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		drain := time.NewTimer(500 * time.Millisecond)
		select {
		case <-readDone:
		case <-drain.C:
		}
		drain.Stop()
		if err != nil {
			return fmt.Errorf("%s failed: %s", what, DescribeExit(err))
		}
		return nil
	case <-t.C:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s did not finish within %v", what, budget)
	}
}

// bare is err without the program's name or path, which exec's and the
// file system's errors carry: the caller logs the command its own way.
func bare(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
