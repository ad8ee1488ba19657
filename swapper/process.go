package swapper

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ProcessSpec says what to run. Argv is never passed through a shell.
type ProcessSpec struct {
	Argv []string
	// Env is added to hotswap's own environment.
	Env []string
	// Output receives each line the process writes to stdout or stderr.
	// It is called from one goroutine per process and must not block long.
	Output func(line string)
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
	// Stop sends SIGTERM to the process group, SIGKILL after timeout, and
	// returns once the leader has exited. It is safe to call more than once.
	Stop(timeout time.Duration)
}

// Starter starts processes. It is the seam that lets the swapper be tested
// with processes that are not real, though hotswap's own tests mostly use
// real mock backends.
type Starter interface {
	Start(spec ProcessSpec) (Process, error)
}

// tailLines is how many output lines a failed start reports.
const tailLines = 20

// ExecStarter starts real processes. Each runs in its own process group and,
// on Linux, gets SIGKILL when hotswap dies (Pdeathsig).
//
// Pdeathsig is tied to the OS thread that forked the child, not to the
// process: if the Go runtime retired that thread, the child would be killed
// although hotswap lives on. So every fork happens on one goroutine locked
// to its thread for the life of the starter.
//
// With Guard set, a guard process (see RunGuard) also takes every
// backend's whole process group along if hotswap is killed.
type ExecStarter struct {
	// Guard is the command that runs RunGuard: hotswap runs itself as
	// "hotswap guard". Without it, only the process hotswap started dies
	// with hotswap.
	Guard []string

	reqs      chan startReq
	once      sync.Once
	closeOnce sync.Once
	guard     *guard
}

type startReq struct {
	cmd  *exec.Cmd
	errc chan error
}

func (s *ExecStarter) loop() {
	s.once.Do(func() {
		if len(s.Guard) > 0 {
			s.guard = &guard{argv: s.Guard, groups: make(map[int]bool)}
		}
		s.reqs = make(chan startReq)
		go func() {
			// Never unlocked: when this goroutine's thread goes away, so does
			// hotswap.
			runtime.LockOSThread()
			for r := range s.reqs {
				r.errc <- r.cmd.Start()
			}
		}()
	})
}

// Close ends the starting thread. Children it started get their death
// signal when it goes, so call Close only once they have all been stopped.
func (s *ExecStarter) Close() error {
	s.loop()
	s.closeOnce.Do(func() {
		close(s.reqs)
		if s.guard != nil {
			s.guard.close()
		}
	})
	return nil
}

// Start implements Starter.
func (s *ExecStarter) Start(spec ProcessSpec) (Process, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("empty command")
	}
	s.loop()
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.SysProcAttr = sysProcAttr()
	// One pipe for both streams, read by us until every holder (the
	// backend and anything it spawned) has closed it. Wait does not wait
	// for it, so a grandchild holding the pipe cannot delay noticing that
	// the backend exited.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	errc := make(chan error, 1)
	s.reqs <- startReq{cmd: cmd, errc: errc}
	err = <-errc
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	p := &execProcess{cmd: cmd, done: make(chan struct{}), readDone: make(chan struct{}), wrote: make(chan struct{}, 1),
		tail: make([]string, 0, tailLines)}
	if g := s.guard; g != nil {
		pgid := cmd.Process.Pid // its own group, led by it
		if err := g.add(pgid); err != nil {
			// Still run it: without the guard it dies with hotswap all
			// the same, only its children might not.
			fmt.Fprintln(os.Stderr, "hotswap:", err)
		}
		p.gone = func() { g.remove(pgid) }
	}
	p.lastOutput.Store(time.Now().UnixNano())
	go p.read(r, spec.Output)
	go p.wait()
	return p, nil
}

type execProcess struct {
	cmd        *exec.Cmd
	done       chan struct{}
	readDone   chan struct{} // closed when every writer has closed the output pipe
	wrote      chan struct{}
	exitErr    error
	lastOutput atomic.Int64

	mu   sync.Mutex
	tail []string
	next int // ring index once tail is full

	stopOnce sync.Once
	// gone, if set, is called once the process and its group are gone.
	gone func()
}

func (p *execProcess) Pid() int                       { return p.cmd.Process.Pid }
func (p *execProcess) Done() <-chan struct{}          { return p.done }
func (p *execProcess) ExitErr() error                 { <-p.done; return p.exitErr }
func (p *execProcess) LastOutput() time.Time          { return time.Unix(0, p.lastOutput.Load()) }
func (p *execProcess) Wrote() <-chan struct{}         { return p.wrote }
func (p *execProcess) signalGroup(sig syscall.Signal) { _ = syscall.Kill(-p.Pid(), sig) }

func (p *execProcess) wait() {
	p.exitErr = p.cmd.Wait()
	// Whatever the leader left behind in its group goes with it: a backend
	// that crashed must not leave workers holding GPU memory.
	p.signalGroup(syscall.SIGKILL)
	if p.gone != nil {
		p.gone()
	}
	close(p.done)
}

func (p *execProcess) read(r io.ReadCloser, out func(string)) {
	defer close(p.readDone)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		p.lastOutput.Store(time.Now().UnixNano())
		p.mu.Lock()
		if len(p.tail) < tailLines {
			p.tail = append(p.tail, line)
		} else {
			p.tail[p.next] = line
			p.next = (p.next + 1) % tailLines
		}
		p.mu.Unlock()
		select {
		case p.wrote <- struct{}{}:
		default:
		}
		if out != nil {
			out(line)
		}
	}
	// A line longer than the scanner's buffer ends the scan; drain the rest
	// so the backend never blocks writing to a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

func (p *execProcess) Tail() []string {
	select {
	case <-p.done:
		// A grandchild may hold the pipe open; do not wait for it long.
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-p.readDone:
		case <-t.C:
		}
		t.Stop()
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.tail))
	out = append(out, p.tail[p.next:]...)
	return append(out, p.tail[:p.next]...)
}

func (p *execProcess) Stop(timeout time.Duration) {
	p.stopOnce.Do(func() {
		p.signalGroup(syscall.SIGTERM)
	})
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.signalGroup(syscall.SIGKILL)
		<-p.done
	}
}
