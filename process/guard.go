package process

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Pdeathsig reaches the process hotswap started, not what that process
// started: a backend run through a shell script, or vLLM's worker
// processes, would outlive a hotswap killed with SIGKILL, holding memory.
// And on macOS there is no Pdeathsig at all. So a guard process watches
// hotswap. It is told each backend's process group as it starts and when
// it is gone; when hotswap dies (however: its end of the pipe closes, or,
// on macOS, the kernel says it exited), it kills every group still listed.
// Processes that leave their group on purpose (setsid) are beyond it.

// GuardParentEnv names hotswap's pid in the guard's environment: the
// process whose exit the guard watches for (macOS: kqueue's NOTE_EXIT), as
// well as its end of the pipe closing. Without it, the guard's parent.
const GuardParentEnv = "HOTSWAP_GUARD_PARENT"

// guardGrace is how long the guard, once told that hotswap exited, keeps
// reading what hotswap wrote before dying. Its end of the pipe closes as it
// exits, so the pipe ends at once unless something else holds it open.
const guardGrace = time.Second

// GuardGroups is the guard's work: it reads "+PGID" and "-PGID" lines
// from r, listing and unlisting process groups, until r ends (hotswap has
// died, or closed the pipe on its way out), then kills with SIGKILL every
// group still listed. Where the system can say when a process exits
// (macOS), it also watches hotswap (GuardParentEnv, or its parent): once
// hotswap has exited it reads on for at most guardGrace, in case the pipe
// does not end, and kills the groups then. An error reading r ends the
// watch the same way, and is returned once the groups are killed. Its main,
// which also sets the guard's signals, is cmd/hotswap's "hotswap guard".
func GuardGroups(r io.Reader) error {
	var gone <-chan struct{}
	if pid := guardParent(os.Getenv(GuardParentEnv), os.Getppid()); pid > 1 {
		g, stop, err := watchExit(pid)
		if err != nil {
			// The pipe alone still works.
			fmt.Fprintln(os.Stderr, "hotswap guard: not watching hotswap's exit:", err)
		} else {
			defer stop()
			gone = g
		}
	}
	return guardWatch(r, gone, func() <-chan time.Time { return time.After(guardGrace) }, killGroup)
}

// guardParent is the pid the guard watches: the one hotswap put in the
// environment, else the guard's parent's. 0 or 1: none (hotswap already
// died and the guard was handed to init; the pipe will say so).
func guardParent(env string, ppid int) int {
	if pid, err := strconv.Atoi(env); err == nil && pid > 1 {
		return pid
	}
	if ppid > 1 {
		return ppid
	}
	return 0
}

// noPdeathsig, set by tests before anything starts, has the Linux starter
// leave out Pdeathsig, as on macOS: the guard alone then stands between a
// hotswap killed and its backends.
var noPdeathsig bool

func killGroup(pgid int) { _ = syscall.Kill(-pgid, syscall.SIGKILL) }

// guardList is the groups a guard has been told about.
type guardList map[int]bool

// apply takes in one line of the protocol: "+PGID" lists a group, "-PGID"
// unlists it; anything else, and init's group or lower, is ignored.
func (l guardList) apply(line string) {
	if len(line) < 2 {
		return
	}
	pgid, err := strconv.Atoi(line[1:])
	if err != nil || pgid <= 1 {
		return
	}
	switch line[0] {
	case '+':
		l[pgid] = true
	case '-':
		delete(l, pgid)
	}
}

// sorted is the listed groups in order, for kills that tests can predict.
func (l guardList) sorted() []int {
	out := make([]int, 0, len(l))
	for pgid := range l {
		out = append(out, pgid)
	}
	sort.Ints(out)
	return out
}

// guardWatch is GuardGroups with its world passed in: r carries the
// lines; parentGone (nil: never) is closed when hotswap has exited; grace
// starts the wait for the rest of the pipe after that; kill kills a group.
// It returns once it has killed every group still listed: when r ends, or
// when grace runs out after parentGone. Its reading goroutine ends with r.
func guardWatch(r io.Reader, parentGone <-chan struct{}, grace func() <-chan time.Time, kill func(pgid int)) error {
	lines := make(chan string)
	ended := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
		ended <- sc.Err()
	}()
	list := guardList{}
	var timeout <-chan time.Time
	var err error
loop:
	for {
		select {
		case line := <-lines:
			list.apply(line)
		case err = <-ended:
			break loop
		case <-parentGone:
			parentGone = nil
			timeout = grace()
		case <-timeout:
			break loop
		}
	}
	for _, pgid := range list.sorted() {
		kill(pgid)
	}
	if err != nil {
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
	exited chan struct{} // closed once cmd has exited and been waited for
	groups map[int]bool
	// revived counts the guards watch has started since the last add: a
	// guard that cannot run is not started again and again.
	revived int
	closed  bool
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
	g.revived = 0
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
	return g.restartLocked()
}

// restartLocked starts a guard and tells it every group listed.
func (g *guard) restartLocked() error {
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
	cmd.Env = append(os.Environ(), GuardParentEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	exited := make(chan struct{})
	g.cmd, g.in, g.exited = cmd, in, exited
	go g.watch(cmd, exited)
	return nil
}

// watch waits for the guard cmd to exit. If it was not stopped on purpose
// (something killed it) while groups are listed, it starts another at
// once rather than at the next add or remove: until then, a hotswap killed
// would leave those groups running (on macOS, their leaders too). After
// maxRevived such starts with no add between, it leaves the next start to
// the next add or remove, so that a guard that cannot run does not spin.
func (g *guard) watch(cmd *exec.Cmd, exited chan struct{}) {
	_ = cmd.Wait()
	close(exited)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.cmd != cmd {
		return // stopped on purpose, or already replaced
	}
	g.cmd, g.in, g.exited = nil, nil, nil
	if len(g.groups) == 0 || g.revived >= maxRevived {
		return
	}
	g.revived++
	if err := g.restartLocked(); err != nil {
		fmt.Fprintln(os.Stderr, "hotswap:", err)
	}
}

const maxRevived = 3

func (g *guard) stopLocked() {
	if g.cmd == nil {
		return
	}
	g.in.Close() // it kills what is still listed, and exits
	<-g.exited
	g.cmd, g.in, g.exited = nil, nil, nil
}

// close ends the guard: hotswap is done, and has stopped its backends.
func (g *guard) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
	g.closed = true
}

// pid is the running guard's pid, 0 if none: for tests.
func (g *guard) pid() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return 0
	}
	return g.cmd.Process.Pid
}
