package main

import (
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/hotswap/hotswap/process"
)

// guard is "hotswap guard", the process that takes every backend's process
// group along when hotswap is killed (see process.GuardGroups): hotswap's
// starter runs it with a pipe on its standard input, and tells it the
// groups there. "hotswap guard exec PATH ARGV..." is the gate a backend
// starts through where there is no Pdeathsig (macOS; process.GuardExec).
func guard(args []string, in io.Reader, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "exec" {
		fmt.Fprintln(stderr, process.GuardExec(args[1:])) // only on failure
		return 1
	}
	// Ctrl-C reaches the terminal's foreground group, and SIGTERM may be
	// sent to hotswap's group: the guard outlives both, and ends when
	// hotswap has (its end of the pipe closes).
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := process.GuardGroups(in); err != nil {
		fmt.Fprintln(stderr, "hotswap guard:", err)
		return 1
	}
	return 0
}
