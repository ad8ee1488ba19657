// Package process starts, guards and stops backend processes: the
// machinery that carries out the swapper's decisions. The swapper holds a
// backend only through the Starter and Process interfaces below.
//
// Where things are:
//   - start.go: ExecStarter, where a backend's process is started: argv
//     (never a shell), its environment, its own process group, and, on
//     Linux, its death signal, from one thread locked for the starter's life.
//   - execprocess.go: a started process: its output (each line handed to
//     Spec.Output, the last lines kept for a failed start's error), its
//     exit, and Stop (SIGTERM to the group, SIGKILL after a timeout).
//   - stopcmd.go: a stop command run in place of SIGTERM (Spec.Stop), for
//     a backend in a container that stopping its client would not stop.
//   - guard.go: the guard, a process that takes every backend's group
//     along when hotswap is killed with SIGKILL: its work (GuardGroups,
//     which cmd/hotswap runs as "hotswap guard") and the starter's end of
//     its pipe.
//   - gate.go: where there is no Pdeathsig (macOS), a backend starts
//     gated ("hotswap guard exec") until the guard has its group.
//   - guard_darwin.go, guard_other.go: the guard's watch on hotswap's exit
//     (kqueue on macOS; none elsewhere, where the pipe alone tells).
//   - sysproc_*.go: the per-OS process attributes.
//   - exit.go: how a process ended, for people, and whether it looks to
//     have run out of memory.
//   - ports.go: the ports ${PORT} is taken from.
package process

import "time"

// Spec says what to run. Argv is never passed through a shell.
type Spec struct {
	Argv []string
	// Env is added to hotswap's own environment.
	Env []string
	// Output receives each line the process writes to stdout or stderr.
	// It is called from one goroutine per process and must not block long.
	Output func(line string)
	// Stop, when set, is how Process.Stop asks the process to end, in
	// place of SIGTERM: for a backend that runs elsewhere (docker stop for
	// one in a container). See StopCommand.
	Stop *StopCommand
	// Kill makes Process.Stop send SIGKILL to the group at once, in place
	// of SIGTERM: for a backend that has nothing to save and takes its
	// time to exit. Stop, when set, wins: the command runs, and if it
	// fails the group is killed at once.
	Kill bool
}

// StopCommand is a command that stops a process, run by Process.Stop in
// place of SIGTERM. It runs as the process did (its argv never through a
// shell, in a process group of its own, hotswap's environment) and is given
// the stop's timeout less a grace: if it fails (cannot start, exits
// non-zero) or is still running then (its group is killed), the process
// gets SIGTERM after all, and SIGKILL at the timeout. A command that
// succeeds is followed only by that SIGKILL, if the process outlives the
// timeout. The command runs even if the process has already exited: a
// container may outlive the client that ran it.
type StopCommand struct {
	// Argv is the command to run for the process's pid.
	Argv func(pid int) []string
	// Output receives each line the command writes to stdout or stderr.
	Output func(line string)
	// Failed, if set, is told why the command failed or timed out. The
	// error never holds the command's arguments (they may hold secrets):
	// the caller says which command it was.
	Failed func(err error)
}

// Process is a running backend process and the process group it leads.
type Process interface {
	Pid() int
	// Done is closed once the process has exited.
	Done() <-chan struct{}
	// ExitErr is the process's exit status once Done is closed.
	ExitErr() error
	// LastOutput is when the process last wrote a line.
	LastOutput() time.Time
	// Wrote receives a value after the process writes a line (coalesced:
	// one value may stand for many lines).
	Wrote() <-chan struct{}
	// Tail returns the last lines the process wrote, oldest first. Once
	// the process has exited, it first gives the output still in the pipe
	// a moment to be read: the last line is usually the reason it died.
	Tail() []string
	// Stop sends SIGTERM to the process group (or runs Spec.Stop; SIGKILL
	// at once with Spec.Kill), SIGKILL after timeout, and returns once the leader has exited. It is safe to
	// call more than once.
	Stop(timeout time.Duration)
}

// Starter starts processes. It is the seam that lets the swapper be tested
// with processes that are not real, though hotswap's own tests mostly use
// real mock backends.
type Starter interface {
	Start(spec Spec) (Process, error)
}
