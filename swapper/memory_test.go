package swapper_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	statefile "github.com/hotswap/hotswap/state"
	"github.com/hotswap/hotswap/swapper"
)

const gib = int64(1) << 30

// memSwapper is a swapper planning with the fake memory; mock backends
// are started with -model ID, which the fake uses to script their use.
func memSwapper(t *testing.T, text string, mem probe.Memory, tweak func(*swapper.Options)) (*swapper.Swapper, *mocktest.Starter) {
	t.Helper()
	cfg, err := config.Parse([]byte("ports: 25000-25999\n" + strings.ReplaceAll(text, "MOCK", mockExe)))
	if err != nil {
		t.Fatal(err)
	}
	st := &mocktest.Starter{}
	opts := swapper.Options{
		Models:          cfg.Models,
		Ports:           cfg.Ports,
		Starter:         st,
		Memory:          mem,
		CooldownMax:     10 * time.Second,
		MeasureInterval: 50 * time.Millisecond,
		TTLInterval:     20 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&opts)
	}
	sw := swapper.New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sw.Close(ctx)
	})
	return sw, st
}

// use acquires and releases model: one request served.
func use(t *testing.T, sw *swapper.Swapper, model string) {
	t.Helper()
	acquire(t, sw, model).Release()
}

// useLater serves a request for model in the background: the channel
// gives its error once it has been served (or refused).
func useLater(sw *swapper.Swapper, model string) <-chan error {
	got := make(chan error, 1)
	go func() {
		l, err := sw.Acquire(context.Background(), model)
		if err == nil {
			l.Release()
		}
		got <- err
	}()
	return got
}

func states(sw *swapper.Swapper, models ...string) string {
	var out []string
	for _, m := range models {
		out = append(out, m+"="+state(sw, m).String())
	}
	return strings.Join(out, " ")
}

// fiveModels declare 3GiB of RAM each; the fake makes them use just that.
const fiveModels = `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 3GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", memory: {ram: 3GiB}}
  c: {cmd: "MOCK -port ${PORT} -model c", memory: {ram: 3GiB}}
  d: {cmd: "MOCK -port ${PORT} -model d", memory: {ram: 4GiB}}
  huge: {cmd: "MOCK -port ${PORT} -model huge", memory: {ram: 20GiB}}
`

func fakeFor(t *testing.T, ram int64, gpus ...int64) *probe.Fake {
	f := probe.NewFake(mockExe, ram, gpus...)
	for _, m := range []string{"a", "b", "c"} {
		f.Script(m, probe.Usage{RAM: 3 * gib})
	}
	f.Script("d", probe.Usage{RAM: 4 * gib})
	return f
}

func TestSeveralModelsStayLoadedWhenTheyFit(t *testing.T) {
	sw, st := memSwapper(t, fiveModels, fakeFor(t, 10*gib), nil)
	use(t, sw, "a")
	use(t, sw, "b")
	use(t, sw, "c")
	if got := states(sw, "a", "b", "c"); got != "a=ready b=ready c=ready" {
		t.Errorf("%s: 9GiB of models fit in 10GiB", got)
	}
	if st.Starts() != 3 {
		t.Errorf("%d starts", st.Starts())
	}
}

func TestEvictsExactlyTheLeastRecentlyUsedNeeded(t *testing.T) {
	sw, _ := memSwapper(t, fiveModels, fakeFor(t, 10*gib), nil)
	use(t, sw, "a")
	use(t, sw, "b")
	use(t, sw, "c")
	use(t, sw, "a") // now b is the least recently used
	// d needs 4GiB with 1GiB free: stopping b (3GiB) is exactly enough.
	use(t, sw, "d")
	if got := states(sw, "a", "b", "c", "d"); got != "a=ready b=stopped c=ready d=ready" {
		t.Errorf("after d: %s", got)
	}
}

func TestNeverEvictsUnderARequest(t *testing.T) {
	sw, _ := memSwapper(t, fiveModels, fakeFor(t, 10*gib), nil)
	use(t, sw, "a")
	use(t, sw, "b")
	use(t, sw, "c")
	busy := acquire(t, sw, "a") // a is the least recently used but busy
	busy.Release()
	busy = acquire(t, sw, "b")
	pidB := pid(sw, "b")
	use(t, sw, "c")
	// Order now: a (idle), b (busy), c. d needs one 3GiB model gone: a.
	use(t, sw, "d")
	if got := states(sw, "a", "b", "c", "d"); got != "a=stopped b=ready c=ready d=ready" {
		t.Errorf("after d: %s", got)
	}
	if !mocktest.Alive(pidB) {
		t.Error("the busy backend was killed")
	}
	busy.Release()
}

func TestRefusesWhatCanNeverFitWithoutEvicting(t *testing.T) {
	sw, st := memSwapper(t, fiveModels, fakeFor(t, 10*gib), nil)
	use(t, sw, "a")
	use(t, sw, "b")
	_, err := sw.Acquire(context.Background(), "huge")
	var ie *swapper.InsufficientMemoryError
	if !errors.As(err, &ie) {
		t.Fatalf("err %v, want InsufficientMemoryError", err)
	}
	if ie.Device != "ram" || ie.Need != 20*gib || ie.Free != 4*gib || ie.Freeable != 6*gib {
		t.Errorf("refusal %+v", ie)
	}
	if got := states(sw, "a", "b"); got != "a=ready b=ready" || st.Starts() != 2 {
		t.Errorf("%s after %d starts: a refusal must not evict or start anything", got, st.Starts())
	}
	// Not a failed start: no back-off, the same answer at once next time.
	if _, err := sw.Acquire(context.Background(), "huge"); !errors.As(err, &ie) {
		t.Errorf("second try: %v", err)
	}
}

func TestPinnedSurvivesAndTTLUnloads(t *testing.T) {
	sw, _ := memSwapper(t, `
models:
  pinned: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 3GiB}, pinned: true, ttl: 50ms}
  b: {cmd: "MOCK -port ${PORT} -model b", memory: {ram: 3GiB}}
  d: {cmd: "MOCK -port ${PORT} -model d", memory: {ram: 4GiB}}
  short: {cmd: "MOCK -port ${PORT} -model c", memory: {ram: 3GiB}, ttl: 200ms}
  big: {cmd: "MOCK -port ${PORT} -model big", memory: {ram: 8GiB}}
`, fakeFor(t, 10*gib), nil)
	use(t, sw, "pinned") // least recently used, but pinned
	use(t, sw, "b")
	use(t, sw, "d") // 10GiB in all: pinned + b + d
	if got := states(sw, "pinned", "b", "d"); got != "pinned=ready b=ready d=ready" {
		t.Fatalf("%s", got)
	}
	use(t, sw, "short") // needs 3GiB: b goes, not pinned
	if got := states(sw, "pinned", "b", "d", "short"); got != "pinned=ready b=stopped d=ready short=ready" {
		t.Errorf("after short: %s", got)
	}
	if _, err := sw.Acquire(context.Background(), "big"); err == nil {
		t.Error("big (8GiB) started although pinned holds 3GiB of 10")
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "short") == swapper.Stopped }) {
		t.Errorf("short was not unloaded after its ttl: %s", states(sw, "short"))
	}
	if state(sw, "pinned") != swapper.Ready {
		t.Error("pinned was unloaded")
	}
}

func TestTTLWaitsForRequests(t *testing.T) {
	sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", ttl: 100ms}
  witness: {cmd: "MOCK -port ${PORT} -model b", ttl: 100ms}
`, fakeFor(t, 10*gib), nil)
	l := acquire(t, sw, "a")
	use(t, sw, "witness")
	// witness, idle with the same ttl and used later, is unloaded: the ttl
	// has passed for a too, but a backend in use is never idle.
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "witness") == swapper.Stopped }) {
		t.Fatal("the idle witness was never unloaded")
	}
	if state(sw, "a") != swapper.Ready {
		t.Fatalf("unloaded while serving: %v", state(sw, "a"))
	}
	l.Release()
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "a") == swapper.Stopped }) {
		t.Error("not unloaded after the request ended")
	}
}

// oneOfTwo declares two 6GiB models: in 10GiB, one evicts the other.
const oneOfTwo = `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 6GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", memory: {ram: 6GiB}}
`

// lookAt makes the fake see the processes running now, so that a lingering
// one's memory is kept: the fake lingers only what some look has seen.
func lookAt(t *testing.T, fake *probe.Fake) {
	t.Helper()
	if _, err := fake.Devices(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCooldownEndsWhenMemoryShows(t *testing.T) {
	fake := fakeFor(t, 10*gib)
	sw, st := memSwapper(t, oneOfTwo, fake, nil)
	fake.Script("a", probe.Usage{RAM: 6 * gib})
	fake.Script("b", probe.Usage{RAM: 6 * gib})
	use(t, sw, "a")
	pidA := pid(sw, "a")
	fake.Linger(true) // a's memory stays "in use" after it exits
	lookAt(t, fake)
	got := useLater(sw, "b")
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(pidA) }) {
		t.Fatal("a was not stopped")
	}
	// a is gone, but its memory has not shown up as free: b must wait,
	// looking again and again, without starting.
	looks := fake.Looks()
	if !mocktest.Eventually(5*time.Second, func() bool { return fake.Looks() >= looks+3 }) {
		t.Fatal("the swapper stopped looking at the memory")
	}
	select {
	case err := <-got:
		t.Fatalf("b did not wait for the memory (err %v)", err)
	default:
	}
	if st.Starts() != 1 {
		t.Fatalf("b was started before its memory was free")
	}
	fake.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if st.Starts() != 2 {
		t.Errorf("%d starts", st.Starts())
	}
}

func TestCooldownIsBounded(t *testing.T) {
	fake := fakeFor(t, 10*gib)
	sw, st := memSwapper(t, oneOfTwo, fake, func(o *swapper.Options) { o.CooldownMax = 200 * time.Millisecond })
	fake.Script("a", probe.Usage{RAM: 6 * gib})
	use(t, sw, "a")
	fake.Linger(true)
	lookAt(t, fake)
	_, err := sw.Acquire(context.Background(), "b")
	var ie *swapper.InsufficientMemoryError
	if !errors.As(err, &ie) || st.Starts() != 1 {
		t.Errorf("err %v after %d starts: memory that never came back must not be used", err, st.Starts())
	}
}

func TestReservationsKeepConcurrentStartsApart(t *testing.T) {
	fake := fakeFor(t, 10*gib)
	// Each declares 6GiB but uses only 1GiB at first, as a loading backend
	// does: without reservations both would seem to fit.
	fake.Script("a", probe.Usage{RAM: 1 * gib})
	fake.Script("b", probe.Usage{RAM: 1 * gib})
	sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a -startup 300ms", memory: {ram: 6GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b -startup 300ms", memory: {ram: 6GiB}}
`, fake, nil)
	sampling := sampleMocks()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := sw.Acquire(context.Background(), m)
			if err == nil {
				l.Release()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	maxLive, _ := sampling()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("errors %v", errs)
	}
	if maxLive > 1 {
		t.Errorf("%d backends ran at once; 2×6GiB do not fit in 10GiB", maxLive)
	}
}

func TestLearnedFootprintRaisesEstimateAndSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "footprints.json")
	text := `
models:
  liar: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 1GiB}}
  other: {cmd: "MOCK -port ${PORT} -model b", memory: {ram: 4GiB}}
`
	fake := probe.NewFake(mockExe, 8*gib)
	fake.Script("a", probe.Usage{RAM: 5 * gib}) // uses five times its declaration
	fake.Script("b", probe.Usage{RAM: 4 * gib})
	withState := func(o *swapper.Options) {
		fp, err := statefile.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		o.Footprints = fp
	}

	sw, _ := memSwapper(t, text, fake, withState)
	use(t, sw, "liar")
	if !mocktest.Eventually(5*time.Second, func() bool {
		st, _ := sw.Status("liar")
		return st.Need.RAM == 5*gib
	}) {
		st, _ := sw.Status("liar")
		t.Fatalf("need %d, want the measured 5GiB", st.Need.RAM)
	}
	sw.Close(context.Background())
	if b, err := os.ReadFile(path); err != nil || !strings.Contains(string(b), strconv.FormatInt(5*gib, 10)) {
		t.Fatalf("state file: %v %s", err, b)
	}

	// A new hotswap remembers: with other loaded (4GiB of 8), liar's 1GiB
	// declaration would fit beside it, its real 5GiB does not.
	sw2, _ := memSwapper(t, text, fake, withState)
	use(t, sw2, "other")
	use(t, sw2, "liar")
	if got := states(sw2, "other", "liar"); got != "other=stopped liar=ready" {
		t.Errorf("%s: the learned footprint was not used", got)
	}
	sw2.Close(context.Background())

	// liar is given another backend, which takes 1GiB: what the old one
	// took is that command's, not this one's. It starts beside other.
	fake.Script("c", probe.Usage{RAM: gib})
	sw3, _ := memSwapper(t, strings.Replace(text, "-model a", "-model c", 1), fake, withState)
	use(t, sw3, "other")
	use(t, sw3, "liar")
	if got := states(sw3, "other", "liar"); got != "other=ready liar=ready" {
		t.Errorf("%s: the new command was planned with the old one's footprint", got)
	}
}

func TestMultiGPUPlacement(t *testing.T) {
	fake := probe.NewFake(mockExe, 64*gib, 24*gib, 24*gib)
	fake.Script("x", probe.Usage{RAM: gib, VRAM: map[int]int64{0: 20 * gib}})
	fake.Script("y", probe.Usage{RAM: gib, VRAM: map[int]int64{0: 10 * gib}})
	fake.Script("z", probe.Usage{RAM: gib, VRAM: map[int]int64{0: 10 * gib}})
	sw, _ := memSwapper(t, `
models:
  x: {cmd: "MOCK -port ${PORT} -model x", memory: {vram: 20GiB}, gpu: 0}
  y: {cmd: "MOCK -port ${PORT} -model y", memory: {vram: 10GiB}}
  z: {cmd: "MOCK -port ${PORT} -model z", memory: {vram: 10GiB}}
`, fake, nil)
	use(t, sw, "x")
	use(t, sw, "y") // gpu0 has 4GiB left: y goes to gpu1 without evicting x
	use(t, sw, "z") // gpu1 has 14GiB left: z joins y there
	if got := states(sw, "x", "y", "z"); got != "x=ready y=ready z=ready" {
		t.Fatalf("%s", got)
	}
	for model, want := range map[string]string{"x": "", "y": "1", "z": "1"} {
		st, _ := sw.Status(model)
		got := ""
		for _, e := range environ(st.Pid) {
			if v, ok := strings.CutPrefix(e, "CUDA_VISIBLE_DEVICES="); ok {
				got = v
			}
		}
		if got != want {
			t.Errorf("%s: CUDA_VISIBLE_DEVICES=%q, want %q (pinned models are left alone)", model, got, want)
		}
	}
	st, _ := sw.Status("y")
	if st.Device != "gpu1" || st.Usage.VRAM[1] != 10*gib {
		t.Errorf("y: %+v", st)
	}
}

func environ(pid int) []string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	return strings.Split(string(b), "\x00")
}

func TestVRAMCountsAgainstRAMWithoutGPUs(t *testing.T) {
	for _, unified := range []bool{false, true} {
		fake := probe.NewFake(mockExe, 10*gib) // no GPU at all
		if unified {
			fake = probe.NewFake(mockExe, 10*gib, 64*gib) // a Mac: the "GPU" is RAM
			fake.SetUnified(true)
		}
		fake.Script("a", probe.Usage{RAM: 6 * gib})
		sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 1GiB, vram: 5GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", memory: {vram: 6GiB}}
`, fake, nil)
		use(t, sw, "a")
		use(t, sw, "b") // 6GiB more of RAM does not fit beside a's 6GiB
		if got := states(sw, "a", "b"); got != "a=stopped b=ready" {
			t.Errorf("unified %v: %s", unified, got)
		}
		sw.Close(context.Background())
	}
}

// TestExitWhileLoadingNextToOthers: a backend that runs out of memory
// while loading next to other models is tried again once, after the idle
// ones are stopped; one that exits for any other reason is not, and the
// other models keep running.
func TestExitWhileLoadingNextToOthers(t *testing.T) {
	cases := []struct {
		name    string
		flags   string
		retried bool
		says    []string // in the error
	}{
		{"out of memory", "-fail-start", true, []string{"exit status 1, out of memory", "out of memory (mock)"}},
		{"killed by the OOM killer", "-fail-start -fail-kill", true, []string{"killed by signal 9", "out of memory"}},
		{"bad flag", "-no-such-flag", false, []string{"exit status 2", "flag provided but not defined: -no-such-flag"}},
		{"missing file, exit 0", `-fail-start -fail-status 0 -fail-message "error: failed to open GGUF file '/models/x.gguf' (No such file or directory)"`,
			false, []string{"(exit status 0)", "No such file or directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := fakeFor(t, 10*gib)
			sw, st := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 3GiB}}
  p: {cmd: "MOCK -port ${PORT} -model b", memory: {ram: 3GiB}, pinned: true}
  x: {cmd: "MOCK -port ${PORT} -model x `+strings.ReplaceAll(c.flags, `"`, `\"`)+`", memory: {ram: 1GiB}}
`, fake, nil)
			use(t, sw, "a")
			use(t, sw, "p")
			before := st.Starts()
			_, err := sw.Acquire(context.Background(), "x")
			var se *swapper.StartError
			if !errors.As(err, &se) {
				t.Fatalf("err %v", err)
			}
			for _, want := range c.says {
				if !strings.Contains(se.Error(), want) {
					t.Errorf("error %q does not say %q", se, want)
				}
			}
			if strings.Contains(se.Error(), "<nil>") {
				t.Errorf("error %q", se)
			}
			starts, others := st.Starts()-before, "a=ready p=ready"
			if c.retried {
				// It fitted, so nothing was evicted for the first try;
				// its death next to other models cost the idle unpinned
				// one its place for the retry.
				starts, others = starts-1, "a=stopped p=ready"
			}
			if starts != 1 {
				t.Errorf("%d starts of x, want %d", st.Starts()-before, map[bool]int{true: 2, false: 1}[c.retried])
			}
			if got := states(sw, "a", "p"); got != others {
				t.Errorf("%s, want %s", got, others)
			}
		})
	}
	// Alone, a failure is not retried, out of memory or not.
	sw, st := memSwapper(t, `
models:
  oom: {cmd: "MOCK -port ${PORT} -model oom -fail-start"}
`, fakeFor(t, 10*gib), nil)
	sw.Acquire(context.Background(), "oom")
	if st.Starts() != 1 {
		t.Errorf("%d starts with nothing else loaded, want 1", st.Starts())
	}
}

func TestLoadsThatFitOverlap(t *testing.T) {
	sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a -startup 2s", memory: {ram: 3GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b -startup 2s", memory: {ram: 3GiB}}
`, fakeFor(t, 10*gib), nil)
	var wg sync.WaitGroup
	for _, m := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			use(t, sw, m)
		}()
	}
	// Planning is serialised, loading is not: both processes load at once.
	if !mocktest.Eventually(10*time.Second, func() bool {
		return len(mocktest.Pids(mockExe)) == 2 && states(sw, "a", "b") == "a=starting b=starting"
	}) {
		t.Errorf("the two loads never overlapped: %s", states(sw, "a", "b"))
	}
	wg.Wait()
}

// TestDriverFreeFigureIsNotTrustedAlone: the driver reports a GPU free
// although our own backend is measured to hold 20GiB of it (drivers report
// frees late, and sometimes never). Planning must go by the measurement.
func TestDriverFreeFigureIsNotTrustedAlone(t *testing.T) {
	fake := probe.NewFake(mockExe, 64*gib, 24*gib)
	fake.Script("x", probe.Usage{VRAM: map[int]int64{0: 20 * gib}})
	fake.Script("y", probe.Usage{VRAM: map[int]int64{0: 10 * gib}})
	sw, _ := memSwapper(t, `
models:
  x: {cmd: "MOCK -port ${PORT} -model x", memory: {vram: 20GiB}, gpu: 0}
  y: {cmd: "MOCK -port ${PORT} -model y", memory: {vram: 10GiB}, gpu: 0}
`, fake, nil)
	use(t, sw, "x")
	fake.Hold(0, -20*gib) // the driver now claims all 24GiB are free
	devs, _ := fake.Devices(context.Background())
	if devs[1].Free != 24*gib {
		t.Fatalf("fake GPU free %d", devs[1].Free)
	}
	use(t, sw, "y")
	if got := states(sw, "x", "y"); got != "x=stopped y=ready" {
		t.Errorf("%s: y was placed on memory x holds", got)
	}
}

// blindMemory is a probe whose next looks at the devices fail, as a read
// of /proc/meminfo or NVML can.
type blindMemory struct {
	*probe.Fake
	mu   sync.Mutex
	fail int // looks still to fail
}

func (m *blindMemory) failNext(n int) { m.mu.Lock(); m.fail = n; m.mu.Unlock() }

func (m *blindMemory) Devices(ctx context.Context) ([]probe.Device, error) {
	m.mu.Lock()
	fail := m.fail > 0
	if fail {
		m.fail--
	}
	m.mu.Unlock()
	if fail {
		return nil, errors.New("memory cannot be read just now")
	}
	return m.Fake.Devices(ctx)
}

// TestStoppedBackendsMemoryIsNotTakenForOthers: a backend stopped while
// memory could not be looked at again leaves a snapshot that still counts
// its memory as used, by nobody hotswap knows. Its memory is in transit
// until memory is looked at again: a start that needs it waits for that
// look, and is neither refused (insufficient_memory) nor made to evict
// another model for memory that is already free.
func TestStoppedBackendsMemoryIsNotTakenForOthers(t *testing.T) {
	fake := fakeFor(t, 6*gib)
	mem := &blindMemory{Fake: fake}
	sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 3GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", memory: {ram: 3GiB}, pinned: true}
  c: {cmd: "MOCK -port ${PORT} -model c", memory: {ram: 3GiB}}
`, mem, func(o *swapper.Options) {
		o.ReserveRAM = 0
		o.RefreshInterval = 100 * time.Millisecond
	})
	use(t, sw, "a")
	use(t, sw, "b")
	// The look a's stop makes fails, and the periodic one after it; the
	// next one sees a's memory free.
	mem.failNext(2)
	if err := sw.Unload(context.Background(), "a", false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := sw.Acquire(ctx, "c")
	if err != nil {
		t.Fatalf("c, in a's memory: %v", err)
	}
	l.Release()
	if got := states(sw, "a", "b", "c"); got != "a=stopped b=ready c=ready" {
		t.Errorf("states %s", got)
	}
}
