package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// Without Pdeathsig (macOS), a backend started in the moment before the
// guard is told its group would outlive a hotswap killed in that moment:
// nothing would know of it. So there a backend starts gated: as the
// guard's command with "exec PATH ARGV...", which waits for one byte on
// its file 3 and then becomes the backend (the same pid, in the group
// already made for it). hotswap sends the byte once the guard has the
// group. If hotswap dies first, file 3 ends with no byte and the gate
// exits, having run nothing.

// gateStarts says whether backends start gated: where there is no
// Pdeathsig, and where a test asks for macOS's ways on Linux.
func gateStarts() bool { return runtime.GOOS != "linux" || noPdeathsig }

// gate rewrites cmd, not yet started, to start through the guard's
// command guardArgv gated, and returns what to call once it has started:
// open, to let it run (or, with false, to stop it there). A cmd whose
// program was not found keeps its error, for Start to return. If the
// guard's program is gone (hotswap's binary removed under it), cmd starts
// ungated rather than not at all: the guard still gets its group, only the
// moment between fork and telling the guard is not covered.
func gate(cmd *exec.Cmd, guardArgv []string) (open func(run bool), err error) {
	if cmd.Err != nil {
		return func(bool) {}, nil
	}
	if _, err := os.Stat(guardArgv[0]); err != nil {
		fmt.Fprintln(os.Stderr, "hotswap: starting a backend ungated:", err)
		return func(bool) {}, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	cmd.Args = append(append(append([]string(nil), guardArgv...), "exec", cmd.Path), cmd.Args...)
	cmd.Path = guardArgv[0]
	cmd.ExtraFiles = []*os.File{r} // file 3
	return func(run bool) {
		r.Close()
		if run {
			_, _ = w.Write([]byte{1})
		}
		w.Close()
	}, nil
}

// GuardExec is the gate's side: "hotswap guard exec PATH ARGV..." calls it
// with PATH ARGV.... It waits for hotswap's byte on file 3, then execs
// PATH with ARGV and the environment; it returns only on failure: hotswap
// died before the guard had the group (no byte), or the exec failed.
func GuardExec(args []string) error {
	if len(args) < 2 {
		return errors.New("guard exec: want PATH ARGV0 [ARG...]")
	}
	f := os.NewFile(3, "gate")
	if f == nil {
		return errors.New("guard exec: no gate (file 3)")
	}
	var b [1]byte
	n, _ := f.Read(b[:])
	f.Close() // the backend must not hold it
	if n != 1 {
		return errors.New("guard exec: hotswap went before its guard knew of this backend; not starting it")
	}
	err := syscall.Exec(args[0], args[1:], os.Environ())
	return fmt.Errorf("guard exec: %s: %w", args[0], err)
}
