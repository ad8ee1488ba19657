package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"
)

// ExecStarter starts real processes. Each runs in its own process group and,
// on Linux, gets SIGKILL when hotswap dies (Pdeathsig).
//
// Pdeathsig is tied to the OS thread that forked the child, not to the
// process: if the Go runtime retired that thread, the child would be killed
// although hotswap lives on. So every fork happens on one goroutine locked
// to its thread for the life of the starter.
//
// With Guard set, a guard process (see GuardGroups) also takes every
// backend's whole process group along if hotswap is killed. On macOS,
// which has no Pdeathsig, the guard is all there is, and backends start
// gated until it has their group (gate.go).
type ExecStarter struct {
	// Guard is the command that runs GuardGroups on its standard input
	// (and, with "exec PATH ARGV...", GuardExec): hotswap runs itself as
	// "hotswap guard". Without it, only the process hotswap started dies
	// with hotswap, and on macOS not even that.
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
func (s *ExecStarter) Start(spec Spec) (Process, error) {
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
	open := func(bool) {}
	if s.guard != nil && gateStarts() {
		if open, err = gate(cmd, s.Guard); err != nil { // see gate.go
			w.Close()
			r.Close()
			return nil, err
		}
	}
	errc := make(chan error, 1)
	s.reqs <- startReq{cmd: cmd, errc: errc}
	err = <-errc
	w.Close()
	if err != nil {
		open(false)
		r.Close()
		return nil, err
	}
	p := &execProcess{cmd: cmd, done: make(chan struct{}), readDone: make(chan struct{}), wrote: make(chan struct{}, 1),
		tail: make([]string, 0, tailLines), stop: spec.Stop, kill: spec.Kill}
	if g := s.guard; g != nil {
		pgid := cmd.Process.Pid // its own group, led by it
		if err := g.add(pgid); err != nil {
			// Still run it: without the guard it dies with hotswap all
			// the same, only its children might not.
			fmt.Fprintln(os.Stderr, "hotswap:", err)
		}
		p.gone = func() { g.remove(pgid) }
	}
	open(true)
	p.lastOutput.Store(time.Now().UnixNano())
	go p.read(r, spec.Output)
	go p.wait()
	return p, nil
}
