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
// groups there.
func guard(in io.Reader, stderr io.Writer) int {
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
