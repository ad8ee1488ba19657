package process

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// Pdeathsig reaches the process hotswap started, not what that process
// started: a backend run through a shell script, or vLLM's worker
// processes, would outlive a hotswap killed with SIGKILL, holding memory.
// So a guard process watches hotswap. It is told each backend's process
// group as it starts and when it is gone; when hotswap dies (however: its
// end of the pipe closes), it kills every group still listed. Processes
// that leave their group on purpose (setsid) are beyond it.

// GuardGroups is the guard's work: it reads "+PGID" and "-PGID" lines
// from r, listing and unlisting process groups, until r ends (hotswap has
// died, or closed the pipe on its way out), then kills with SIGKILL every
// group still listed. An error reading r ends the watch the same way, and
// is returned once the groups are killed. Its main, which also sets the
// guard's signals, is cmd/hotswap's "hotswap guard".
func GuardGroups(r io.Reader) error {
	groups := map[int]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[pgid] = true
		case '-':
			delete(groups, pgid)
		}
	}
	for pgid := range groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("guard: reading the groups to guard: %w", err)
	}
	return nil
}

// guard is the guard process as the starter sees it.
type guard struct {
	argv []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	in     io.WriteCloser
	groups map[int]bool
	closed bool
}

// add lists pgid with the guard, starting the guard if it is not running
// (it was never started, or something killed it).
func (g *guard) add(pgid int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.groups[pgid] = true
	return g.sendLocked(fmt.Sprintf("+%d\n", pgid))
}

// remove takes pgid off the list: its processes are gone.
func (g *guard) remove(pgid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.groups[pgid]; !ok || g.closed {
		return
	}
	delete(g.groups, pgid)
	_ = g.sendLocked(fmt.Sprintf("-%d\n", pgid))
}

func (g *guard) sendLocked(line string) error {
	if g.in != nil {
		if _, err := io.WriteString(g.in, line); err == nil {
			return nil
		}
		g.stopLocked() // dead: start another, and tell it everything
	}
	if err := g.startLocked(); err != nil {
		return err
	}
	for pgid := range g.groups {
		if _, err := fmt.Fprintf(g.in, "+%d\n", pgid); err != nil {
			return fmt.Errorf("guard: %w", err)
		}
	}
	return nil
}

func (g *guard) startLocked() error {
	cmd := exec.Command(g.argv[0], g.argv[1:]...)
	// Its own group, and no death signal: it must outlive hotswap.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	g.cmd, g.in = cmd, in
	return nil
}

func (g *guard) stopLocked() {
	if g.cmd == nil {
		return
	}
	g.in.Close() // it kills what is still listed, and exits
	_ = g.cmd.Wait()
	g.cmd, g.in = nil, nil
}

// close ends the guard: hotswap is done, and has stopped its backends.
func (g *guard) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
	g.closed = true
}
