package process_test

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/process"
)

// group starts sleep as the leader of its own process group; exited is
// closed once it has exited and been waited for.
func group(t *testing.T) (cmd *exec.Cmd, exited <-chan struct{}) {
	t.Helper()
	cmd = exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd, done
}

func TestGuardGroupsKillsTheGroupsStillListed(t *testing.T) {
	listed, listedExited := group(t)
	unlisted, _ := group(t)
	a, b := listed.Process.Pid, unlisted.Process.Pid
	in := strings.Join([]string{
		"+" + strconv.Itoa(a),
		"+" + strconv.Itoa(b),
		"-" + strconv.Itoa(b),
		"", "+", "+x", "+1", "-0", "?5", // ignored: never init's group, never garbage
	}, "\n")
	if err := process.GuardGroups(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-listedExited:
	case <-time.After(10 * time.Second):
		t.Fatal("the guard left a listed group running")
	}
	if ws := listed.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("listed group's leader ended %v, want SIGKILL", listed.ProcessState)
	}
	// The kills are done when GuardGroups returns, so this is no race.
	if !mocktest.Alive(b) {
		t.Error("the guard killed a group taken off its list")
	}
}

// killStarter runs a starter (this test binary, see TestMain) with opts
// (see TestMain: "guard", "darwin", "killguard"), kills it with SIGKILL as hotswap may be killed (no code of
// its own runs then), and returns the pids of the backend it started and
// of the child that backend spawned.
func killStarter(t *testing.T, opts ...string) (leader, child int) {
	t.Helper()
	args := append([]string{"starter"}, opts...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fscan(stdout, &leader, &child); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("starter's pids: %v", err)
	}
	// The backend leads its own group, its child in it: whatever the test
	// finds, neither outlives it.
	t.Cleanup(func() { syscall.Kill(-leader, syscall.SIGKILL) })
	if slices.Contains(opts, "killguard") {
		var word string
		if _, err := fmt.Fscan(stdout, &word); err != nil || word != "revived" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("starter after killing its guard: %q, %v", word, err)
		}
	}
	if !mocktest.Alive(leader) || !mocktest.Alive(child) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("backend %d alive %v, its child %d alive %v", leader, mocktest.Alive(leader), child, mocktest.Alive(child))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	return leader, child
}

// TestSIGKILLTakesTheBackendAlong: Pdeathsig alone ends the process the
// starter started when the starter is killed.
func TestSIGKILLTakesTheBackendAlong(t *testing.T) {
	leader, _ := killStarter(t)
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(leader) }) {
		t.Errorf("backend %d outlived the starter", leader)
	}
}

// TestSIGKILLTakesTheBackendsChildrenAlong: Pdeathsig reaches only the
// process the starter started; the guard ends what that process spawned.
func TestSIGKILLTakesTheBackendsChildrenAlong(t *testing.T) {
	leader, child := killStarter(t, "guard")
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(leader) && !mocktest.Alive(child) }) {
		t.Errorf("after kill -9 of the starter: backend %d alive %v, its child %d alive %v",
			leader, mocktest.Alive(leader), child, mocktest.Alive(child))
	}
}

// TestSIGKILLWithoutPdeathsigTakesTheBackendAlong is macOS's case, run
// where it can be: no Pdeathsig, so the guard alone, noticing its pipe
// end, must kill the backend's whole group, leader included.
func TestSIGKILLWithoutPdeathsigTakesTheBackendAlong(t *testing.T) {
	leader, child := killStarter(t, "guard", "darwin")
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(leader) && !mocktest.Alive(child) }) {
		t.Errorf("after kill -9 of the starter, without Pdeathsig: backend %d alive %v, its child %d alive %v",
			leader, mocktest.Alive(leader), child, mocktest.Alive(child))
	}
}

// TestAKilledGuardIsReplaced: something kills the guard; the starter
// starts another at once and tells it the groups, so a kill -9 of the
// starter afterwards still takes the backend along (without Pdeathsig).
func TestAKilledGuardIsReplaced(t *testing.T) {
	leader, child := killStarter(t, "guard", "darwin", "killguard")
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(leader) && !mocktest.Alive(child) }) {
		t.Errorf("after its guard and then itself were killed, without Pdeathsig: backend %d alive %v, its child %d alive %v",
			leader, mocktest.Alive(leader), child, mocktest.Alive(child))
	}
}
