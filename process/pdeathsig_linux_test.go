package process_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/process"
)

// TestBackendOutlivesTheCallersThread: Pdeathsig fires when the thread
// that forked the child ends, and the Go runtime ends threads (a goroutine
// that exits locked to its thread takes the thread along). A backend
// started from such a goroutine must live on: the fork happened on the
// starter's own thread, which lives as long as the starter.
func TestBackendOutlivesTheCallersThread(t *testing.T) {
	s := starter(t)
	type started struct {
		p   process.Process
		tid int
		err error
	}
	var r started
	// A goroutine that exits locked to the main thread does not end it
	// (the runtime parks the thread for good): try again, from another.
	for range 3 {
		ch := make(chan started)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
			p, err := s.Start(process.Spec{Argv: []string{"/bin/sh", "-c", "echo up; exec sleep 1000"}})
			ch <- started{p, syscall.Gettid(), err}
		}()
		if r = <-ch; r.err != nil {
			t.Fatal(r.err)
		}
		p := r.p
		t.Cleanup(func() { p.Stop(time.Second) })
		if r.tid != os.Getpid() {
			break
		}
	}
	if r.tid == os.Getpid() {
		t.Skip("every try ran on the main thread")
	}
	p := r.p
	task := "/proc/self/task/" + strconv.Itoa(r.tid)
	if !mocktest.Eventually(10*time.Second, func() bool { _, err := os.Stat(task); return os.IsNotExist(err) }) {
		t.Fatalf("thread %d never ended", r.tid)
	}
	// The thread is gone, so a death signal it owed is already queued: a
	// SIGKILL would win over the SIGTERM of Stop.
	p.Stop(10 * time.Second)
	if got := process.DescribeExit(p.ExitErr()); !strings.Contains(got, "signal 15") {
		t.Errorf("backend ended %s, want by Stop's SIGTERM: it died with the thread that asked for it", got)
	}
}
