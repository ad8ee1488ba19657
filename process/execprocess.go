package process

import (
	"bufio"
	"io"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// tailLines is how many output lines a failed start reports.
const tailLines = 20

// execProcess is a process ExecStarter started, and the group it leads.
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
	// stop, if set, is run by Stop in place of SIGTERM.
	stop *StopCommand
	// kill: Stop sends SIGKILL in place of SIGTERM (Spec.Kill).
	kill bool
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
	deadline := time.Now().Add(timeout)
	p.stopOnce.Do(func() {
		if p.stop != nil && p.runStop(p.stop, timeout-stopGrace(timeout)) {
			return
		}
		if p.kill {
			p.signalGroup(syscall.SIGKILL)
			return
		}
		p.signalGroup(syscall.SIGTERM)
	})
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.signalGroup(syscall.SIGKILL)
		<-p.done
	}
}
