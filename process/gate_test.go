package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// gated starts sh writing a file through the gate, the test binary playing
// the guard's command (see TestMain), and returns it, its gate's open, and
// the file it writes if it runs.
func gated(t *testing.T) (cmd *exec.Cmd, open func(bool), ran string) {
	t.Helper()
	ran = filepath.Join(t.TempDir(), "ran")
	cmd = exec.Command("/bin/sh", "-c", `echo "$0" > "$1"`, "yes", ran)
	open, err := gate(cmd, []string{os.Args[0], "guard"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		open(false)
		t.Fatal(err)
	}
	return cmd, open, ran
}

func TestGateRunsTheBackendOnceOpened(t *testing.T) {
	cmd, open, ran := gated(t)
	pid := cmd.Process.Pid
	open(true)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("gated backend: %v", err)
	}
	if b, err := os.ReadFile(ran); err != nil || string(b) != "yes\n" {
		t.Errorf("the backend did not run with its arguments: %q, %v", b, err)
	}
	if cmd.Process.Pid != pid {
		t.Error("pid changed") // the gate execs: same pid, same group
	}
}

// TestGateRunsNothingIfHotswapGoesFirst: hotswap killed after the fork but
// before the guard had the group closes the gate's pipe without its byte,
// as open(false) does; the backend must never run.
func TestGateRunsNothingIfHotswapGoesFirst(t *testing.T) {
	cmd, open, ran := gated(t)
	open(false)
	if err := cmd.Wait(); err == nil {
		t.Error("the gate exited 0 without running the backend")
	}
	if _, err := os.Stat(ran); !os.IsNotExist(err) {
		t.Errorf("the backend ran though hotswap was gone: %v", err)
	}
}

func TestGateKeepsANotFoundError(t *testing.T) {
	cmd := exec.Command("hotswap-no-such-program")
	open, err := gate(cmd, []string{os.Args[0], "guard"})
	if err != nil {
		t.Fatal(err)
	}
	defer open(false)
	if err := cmd.Start(); err == nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("a missing program started")
	}
}

// TestGateStepsAsideWithoutTheGuardsProgram: a backend still starts when
// hotswap's binary is gone; only the gate is lost.
func TestGateStepsAsideWithoutTheGuardsProgram(t *testing.T) {
	ran := filepath.Join(t.TempDir(), "ran")
	cmd := exec.Command("/bin/sh", "-c", `echo "$0" > "$1"`, "yes", ran)
	open, err := gate(cmd, []string{filepath.Join(t.TempDir(), "gone"), "guard"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	open(true)
	if b, err := os.ReadFile(ran); err != nil || string(b) != "yes\n" {
		t.Errorf("the backend did not run: %q, %v", b, err)
	}
}
