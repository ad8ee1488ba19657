package process

import (
	"os/exec"
	"testing"
	"time"
)

// TestWatchExit: the guard's second way of telling that hotswap died
// (kqueue's NOTE_EXIT on macOS). Elsewhere there is none and it skips;
// this has not been run on a Mac yet, only built and vetted for one.
func TestWatchExit(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	gone, stop, err := watchExit(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	if gone == nil {
		stop()
		cmd.Process.Kill()
		cmd.Wait()
		t.Skip("no exit watch on this system (macOS only): the guard's pipe alone tells it")
	}
	select {
	case <-gone:
		t.Error("gone before the process exited")
	default:
	}
	cmd.Process.Kill()
	cmd.Wait()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Error("no word of the exit")
	}
	stop()

	// A process already gone is gone at once; stop without an exit ends
	// the watch.
	gone, stop, err = watchExit(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Error("a process already reaped is not gone")
	}
	stop()
	self := exec.Command("sleep", "1000")
	if err := self.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { self.Process.Kill(); self.Wait() }()
	_, stop, err = watchExit(self.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	stop()
}
