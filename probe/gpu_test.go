package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	// gpuTestEnv turns TestNVMLOnRealGPU on. It is off by default: it needs
	// an NVIDIA GPU with a few GiB free and the cudahog binary, which CI has not.
	gpuTestEnv = "HOTSWAP_GPU_TEST"
	// cudahogEnv is the path of a built ./internal/cudahog.
	cudahogEnv = "HOTSWAP_CUDAHOG"

	mib = int64(1) << 20
	// ctxOverhead bounds what a CUDA context adds to a process's VRAM on
	// top of its allocations (a few hundred MiB on recent GPUs).
	ctxOverhead = 1024 * mib
	// freeSlack is how far gpu0's free memory may stray from what the hog
	// explains: the driver keeps some memory of its own that comes and goes.
	freeSlack = 512 * mib
)

// TestNVMLOnRealGPU checks the NVML half of the probe against real
// allocations: a process holding known amounts of VRAM, alone and as the
// child of a shell, must show up in Usage and in gpu0's free memory, and
// vanish from both once it is killed.
//
// Run it on a GPU machine with:
//
//	CGO_ENABLED=1 go build -o /tmp/cudahog ./internal/cudahog
//	HOTSWAP_GPU_TEST=1 HOTSWAP_CUDAHOG=/tmp/cudahog go test -run TestNVMLOnRealGPU -v ./probe
func TestNVMLOnRealGPU(t *testing.T) {
	if os.Getenv(gpuTestEnv) != "1" {
		t.Skipf("set %s=1 (and %s to a built ./internal/cudahog) to run on an NVIDIA GPU", gpuTestEnv, cudahogEnv)
	}
	hog := os.Getenv(cudahogEnv)
	if hog == "" {
		t.Fatalf("%s is unset: build ./internal/cudahog with cgo and point it there", cudahogEnv)
	}
	if _, err := os.Stat(hog); err != nil {
		t.Fatalf("%s: %v", cudahogEnv, err)
	}
	ctx := context.Background()

	core, logs := observer.New(zapcore.InfoLevel)
	m := NewMemory(zap.New(core))
	t.Cleanup(func() {
		if err := m.(io.Closer).Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for _, e := range logs.All() {
		t.Logf("NewMemory logged: %s %v", e.Message, e.ContextMap())
	}
	devs, err := m.Devices(ctx)
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	if len(devs) < 2 {
		t.Fatalf("NVML found no GPU: Devices is %+v", devs)
	}
	if devs[0].Index != DeviceRAM || devs[0].Name != "ram" || devs[0].Total <= 0 {
		t.Errorf("first device is %+v, want RAM", devs[0])
	}
	g := devs[1]
	t.Logf("RAM: total %d MiB, free %d MiB", devs[0].Total/mib, devs[0].Free/mib)
	t.Logf("gpu0: model %q, total %d MiB, free %d MiB", g.Model, g.Total/mib, g.Free/mib)
	if g.Index != 0 || g.Name != "gpu0" || g.Model == "" || g.Total <= 0 || g.Free <= 0 || g.Free > g.Total {
		t.Fatalf("second device is %+v, want gpu0 with a model and 0 < free <= total > 0", g)
	}

	t.Run("process", func(t *testing.T) {
		checkHog(t, m, 2048, exec.Command(hog, "-mib", "2048"))
	})
	t.Run("child of a shell", func(t *testing.T) {
		// The shell forks the hog and waits: the VRAM belongs to its child,
		// which Usage must find by walking the process tree.
		checkHog(t, m, 1024, exec.Command("sh", "-c", `"$0" -mib 1024 & wait`, hog))
	})
}

// hogProc is a running cudahog, or a shell running one.
type hogProc struct {
	cmd    *exec.Cmd
	waited bool
}

// kill ends the hog's whole process group and reaps its leader.
func (h *hogProc) kill() {
	if h.waited {
		return
	}
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	_ = h.cmd.Wait()
	h.waited = true
}

// startHog starts cmd in a process group of its own and waits for the hog
// to print "ready", i.e. to hold its memory.
func startHog(t *testing.T, cmd *exec.Cmd) *hogProc {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr // the hog's reason, should it fail
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	h := &hogProc{cmd: cmd}
	t.Cleanup(h.kill)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "ready" {
				ready <- true
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		ready <- false // exited without allocating: its stderr says why
	}()
	select {
	case ok := <-ready:
		if !ok {
			h.kill()
			t.Fatalf("%v exited before it was ready (%v)", cmd.Args, cmd.ProcessState)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("%v not ready after 90s", cmd.Args)
	}
	return h
}

// checkHog runs cmd, a hog of wantMiB or a process tree holding one, and checks Usage and gpu0's free memory
// while it runs and after it is killed.
func checkHog(t *testing.T, m Memory, wantMiB int64, cmd *exec.Cmd) {
	ctx := context.Background()
	want := wantMiB * mib
	free0 := gpu0Free(t, m)

	h := startHog(t, cmd)
	pid := h.cmd.Process.Pid
	var u Usage
	poll(t, 30*time.Second, fmt.Sprintf("Usage(%d).VRAM[0] >= %d MiB", pid, wantMiB), func() (bool, string) {
		var err error
		u, err = m.Usage(ctx, pid)
		if err != nil {
			return false, err.Error()
		}
		return u.VRAM[0] >= want, fmt.Sprintf("usage %+v", u)
	}, func() { explainVRAM(t, pid) })
	t.Logf("Usage(%d): VRAM[0] %d MiB (%d bytes) for a %d MiB hog, RAM %d MiB, VRAM map %v",
		pid, u.VRAM[0]/mib, u.VRAM[0], wantMiB, u.RAM/mib, u.VRAM)
	if u.VRAM[0] >= want+ctxOverhead {
		t.Errorf("VRAM[0] %d MiB, want < %d MiB (the allocation plus a context)", u.VRAM[0]/mib, (want+ctxOverhead)/mib)
	}
	if len(u.VRAM) != 1 {
		t.Errorf("VRAM %v, want gpu0 alone", u.VRAM)
	}
	if tree, err := processTree(ctx, pid); err == nil && len(tree) > 1 {
		// The shell case: the VRAM is all the child's.
		for _, p := range tree[1:] {
			if cu, err := m.Usage(ctx, p); err == nil {
				t.Logf("descendant %d: VRAM %v", p, cu.VRAM)
				if cu.VRAM[0] != u.VRAM[0] {
					t.Errorf("the tree's VRAM[0] is %d, its hog's %d: want them equal", u.VRAM[0], cu.VRAM[0])
				}
			}
		}
	}

	free1 := gpu0Free(t, m)
	drop := free0 - free1
	t.Logf("gpu0 free: %d MiB before, %d MiB with the hog: dropped %d MiB (%d bytes)", free0/mib, free1/mib, drop/mib, drop)
	if drop < want || drop > u.VRAM[0]+freeSlack || drop < u.VRAM[0]-freeSlack {
		t.Errorf("gpu0 free dropped %d MiB, want at least %d MiB and within %d MiB of the hog's %d MiB",
			drop/mib, wantMiB, freeSlack/mib, u.VRAM[0]/mib)
	}

	h.kill()
	poll(t, 30*time.Second, fmt.Sprintf("Usage(%d) to fail with ErrNoProcess", pid), func() (bool, string) {
		u, err := m.Usage(ctx, pid)
		return errors.Is(err, ErrNoProcess), fmt.Sprintf("usage %+v, error %v", u, err)
	}, nil)
	var free2 int64
	poll(t, 30*time.Second, fmt.Sprintf("gpu0 free back within %d MiB of %d MiB", freeSlack/mib, free0/mib), func() (bool, string) {
		free2 = gpu0Free(t, m)
		return free2 >= free0-freeSlack, fmt.Sprintf("free %d MiB", free2/mib)
	}, nil)
	t.Logf("gpu0 free after the kill: %d MiB (%+d MiB from before the hog)", free2/mib, (free2-free0)/mib)
}

// gpu0Free returns gpu0's free memory, failing the test if it cannot.
func gpu0Free(t *testing.T, m Memory) int64 {
	t.Helper()
	devs, err := m.Devices(context.Background())
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	if len(devs) < 2 {
		t.Fatalf("gpu0 is gone: %+v", devs)
	}
	return devs[1].Free
}

// poll calls cond every 100ms until it is true, failing the test with
// cond's last state (and explain's findings) once timeout has passed.
func poll(t *testing.T, timeout time.Duration, what string, cond func() (bool, string), explain func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if explain != nil {
				explain()
			}
			t.Fatalf("waited %v for %s; last: %s", timeout, what, state)
		}
		<-tick.C
	}
}

// explainVRAM logs what NVML's own tool sees, next to our process tree, for
// when Usage finds no VRAM: pids that differ point at a pid namespace.
func explainVRAM(t *testing.T, pid int) {
	t.Helper()
	tree, err := processTree(context.Background(), pid)
	t.Logf("process tree of %d: %v (%v)", pid, tree, err)
	for _, p := range tree {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p)); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "NSpid:") {
					t.Logf("pid %d %s", p, l)
				}
			}
		}
	}
	out, err := exec.Command("nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv").CombinedOutput()
	t.Logf("nvidia-smi compute apps (%v):\n%s", err, out)
}
