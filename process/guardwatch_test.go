package process

import (
	"errors"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"
)

// These test the guard's protocol and its decisions (which groups it
// kills, and when) with a fake world: no process is started or killed.
// They are what runs of the macOS guard's logic off macOS.

// fakeWorld runs guardWatch on a pipe the test writes, with a parent exit,
// a grace timer and kills the test controls and sees.
type fakeWorld struct {
	w          *io.PipeWriter
	gone       chan struct{}
	graceAsked chan struct{}
	graceEnds  chan time.Time
	mu         sync.Mutex
	killed     []int
	result     chan error
}

func newFakeWorld(t *testing.T) *fakeWorld {
	r, w := io.Pipe()
	f := &fakeWorld{w: w, gone: make(chan struct{}), graceAsked: make(chan struct{}, 1),
		graceEnds: make(chan time.Time), result: make(chan error, 1)}
	go func() {
		f.result <- guardWatch(r, f.gone,
			func() <-chan time.Time { f.graceAsked <- struct{}{}; return f.graceEnds },
			func(pgid int) { f.mu.Lock(); f.killed = append(f.killed, pgid); f.mu.Unlock() })
	}()
	t.Cleanup(func() { w.Close() }) // the reading goroutine ends with the pipe
	return f
}

// write hands lines to the guard; once it returns, every line written
// before has reached the guard's loop (the reader reads on only then), so
// a final empty line (ignored) fences the ones before it.
func (f *fakeWorld) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(f.w, s); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeWorld) kills() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.killed...)
}

func (f *fakeWorld) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.result:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the guard never finished")
		return nil
	}
}

func TestGuardKillsWhatIsListedWhenThePipeEnds(t *testing.T) {
	f := newFakeWorld(t)
	f.write(t, "+30\n+10\n+20\n-20\n\n+\n+x\n+1\n+0\n-0\n?5\n+-7\n")
	f.write(t, "\n")
	if k := f.kills(); len(k) != 0 {
		t.Fatalf("killed %v before hotswap died", k)
	}
	f.w.Close()
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	if k := f.kills(); !reflect.DeepEqual(k, []int{10, 30}) {
		t.Errorf("killed %v, want [10 30]: the groups listed and not unlisted, never init's or garbage", k)
	}
}

// TestGuardReadsOnAfterTheParentExits: kqueue may say hotswap exited
// before the guard has read all it wrote; what it wrote still counts, and
// if the pipe does not end (something else holds it), the grace does.
func TestGuardReadsOnAfterTheParentExits(t *testing.T) {
	f := newFakeWorld(t)
	f.write(t, "+5\n+6\n")
	close(f.gone)
	<-f.graceAsked
	f.write(t, "-6\n+7\n")
	f.write(t, "\n")
	if k := f.kills(); len(k) != 0 {
		t.Fatalf("killed %v before the grace ran out", k)
	}
	f.graceEnds <- time.Time{}
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	if k := f.kills(); !reflect.DeepEqual(k, []int{5, 7}) {
		t.Errorf("killed %v, want [5 7]", k)
	}
}

// TestGuardDoesNotWaitOutTheGraceWhenThePipeEnds: the usual macOS case,
// hotswap's exit and its end of the pipe closing together.
func TestGuardDoesNotWaitOutTheGraceWhenThePipeEnds(t *testing.T) {
	f := newFakeWorld(t)
	f.write(t, "+5\n")
	close(f.gone)
	<-f.graceAsked
	f.w.Close()
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	if k := f.kills(); !reflect.DeepEqual(k, []int{5}) {
		t.Errorf("killed %v, want [5]", k)
	}
}

func TestGuardKillsWhenThePipeFails(t *testing.T) {
	f := newFakeWorld(t)
	f.write(t, "+5\n")
	f.w.CloseWithError(errors.New("broken"))
	if err := f.wait(t); err == nil {
		t.Error("no error for a failed read")
	}
	if k := f.kills(); !reflect.DeepEqual(k, []int{5}) {
		t.Errorf("killed %v, want [5]", k)
	}
}

func TestGuardParent(t *testing.T) {
	for _, c := range []struct {
		env  string
		ppid int
		want int
	}{
		{"4242", 77, 4242}, // hotswap said who it is
		{"", 77, 77},       // else the parent
		{"x", 77, 77},
		{"1", 77, 77},
		{"", 1, 0}, // handed to init: hotswap is gone already, the pipe says so
		{"", 0, 0},
	} {
		if got := guardParent(c.env, c.ppid); got != c.want {
			t.Errorf("guardParent(%q, %d) = %d, want %d", c.env, c.ppid, got, c.want)
		}
	}
}
