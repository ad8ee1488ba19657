package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// benchProgram is the load generator's program (cmd/hotswap-bench). It is
// not linked into hotswap: its plotting, with fonts, LaTeX and PDF code,
// would weigh on every hotswap process and its guard, which never use it.
const benchProgram = "hotswap-bench"

// exitNoBench is `hotswap bench`'s status when hotswap-bench cannot be
// run: a shell's, for a command it cannot find.
const exitNoBench = 127

// runBench is `hotswap bench`: hotswap replaces itself with hotswap-bench
// (exec, in the same process), so that its arguments, standard input and
// output, signals (the first Ctrl-C still writes the report) and exit
// status are the load generator's own, as if it had been run directly.
func runBench(args []string, stderr io.Writer) int {
	exe, err := findBench()
	if err != nil {
		fmt.Fprintln(stderr, "hotswap bench:", err)
		return exitNoBench
	}
	err = syscall.Exec(exe, append([]string{exe}, args...), os.Environ())
	// Exec returns only when it failed.
	fmt.Fprintf(stderr, "hotswap bench: running %s: %v\n", exe, err)
	return exitNoBench
}

// findBench looks for hotswap-bench beside hotswap's own executable, where
// `make build` puts it, then on PATH.
func findBench() (string, error) {
	where, into := "it is not on PATH", "DIR"
	if self, err := os.Executable(); err == nil {
		dir := filepath.Dir(self)
		p := filepath.Join(dir, benchProgram)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
		where, into = "it is neither in "+dir+" (beside hotswap) nor on PATH", dir
	}
	p, err := exec.LookPath(benchProgram)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, exec.ErrNotFound) {
		return "", err
	}
	return "", fmt.Errorf("the load generator is a program of its own, %s, and %s.\n"+
		"To get it, run `make build` in hotswap's source tree (it builds bin/%s beside bin/hotswap), "+
		"or there: go build -o %s ./cmd/%s",
		benchProgram, where, benchProgram, filepath.Join(into, benchProgram), benchProgram)
}
