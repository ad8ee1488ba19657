package swapper_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/swapper"
)

// eventLog keeps every event of the types it is given.
type eventLog struct {
	mu    sync.Mutex
	types []string
	got   []events.Event
}

func (l *eventLog) listen(e events.Event) {
	for _, t := range l.types {
		if e.Type == t {
			l.mu.Lock()
			l.got = append(l.got, e)
			l.mu.Unlock()
		}
	}
}

func (l *eventLog) of(typ string) []events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []events.Event
	for _, e := range l.got {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// sleepers are two mocks that hold 300MiB each for real, and sleep
// (vLLM's endpoints, -sleep-mode: asleep, a mock gives its -hold back)
// keeping at most 64MiB. Under a 500MiB limit one fits awake beside the
// other asleep, never both awake. flagsA are more flags for a's mock,
// moreA more settings of a.
func sleepers(t *testing.T, flagsA, moreA string) (*swapper.Swapper, *mocktest.Starter, *eventLog) {
	t.Helper()
	model := func(name, flags, more string) string {
		return `  ` + name + `:
    cmd: MOCK -port ${PORT} -hold 300MiB -sleep-mode -wake-time 50ms -progress-interval 0 ` + flags + `
    memory: {ram: 300MiB}
    sleep:
      sleep: POST /sleep?level=1
      wake: POST /wake_up
      memory: {ram: 64MiB}
` + more
	}
	hub := events.NewHub(nil)
	log := &eventLog{types: []string{events.Asleep, events.SleepFailed, events.Start, events.Ready}}
	hub.Listen(log.listen)
	sw, st := memSwapper(t, "models:\n"+model("a", flagsA, moreA)+model("b", "", ""), probe.NewMemory(nil), func(o *swapper.Options) {
		o.LimitRAM = 500 << 20
		o.Events = hub
	})
	return sw, st, log
}

// aThenB serves a, then b, which does not fit beside a awake: a is put
// to sleep. It returns a's pid.
func aThenB(t *testing.T, sw *swapper.Swapper) int {
	t.Helper()
	use(t, sw, "a")
	pidA := pid(sw, "a")
	use(t, sw, "b")
	if got := states(sw, "a", "b"); got != "a=asleep b=ready" {
		t.Fatalf("after b: %s", got)
	}
	return pidA
}

// oneSleepFailed checks that one sleep_failed event was published, for a,
// with the action and fallback given.
func oneSleepFailed(t *testing.T, log *eventLog, action, fallback string) []events.Event {
	t.Helper()
	got := log.of(events.SleepFailed)
	if len(got) != 1 || got[0].Model != "a" || got[0].Data["action"] != action || got[0].Data["fallback"] != fallback {
		t.Errorf("sleep_failed events: %+v, want one for a's %s, falling back to %s", got, action, fallback)
	}
	return got
}

// mockSleepStats is what a mock's /mock/stats says of its sleeps.
func mockSleepStats(t *testing.T, sw *swapper.Swapper, model string) (sleeps, wakes int, sleeping bool) {
	t.Helper()
	st, _ := sw.Status(model)
	resp, err := http.Get(st.Upstream + "/mock/stats")
	if err != nil {
		t.Fatalf("%s's stats: %v", model, err)
	}
	defer resp.Body.Close()
	var v struct {
		Sleeps, Wakes int
		Sleeping      bool
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Sleeps, v.Wakes, v.Sleeping
}

// TestSleepInsteadOfStop: with room for one awake and the other asleep,
// alternating requests put the model in the way to sleep rather than
// stopping it, and wake it when asked for: two processes started in all,
// each woken in its wake time.
func TestSleepInsteadOfStop(t *testing.T) {
	sw, st, log := sleepers(t, "", "")
	use(t, sw, "a")
	pidA := pid(sw, "a")
	use(t, sw, "b")
	pidB := pid(sw, "b")
	if got := states(sw, "a", "b"); got != "a=asleep b=ready" {
		t.Fatalf("after b: %s", got)
	}
	if sleeps, _, sleeping := mockSleepStats(t, sw, "a"); sleeps != 1 || !sleeping {
		t.Errorf("a's mock: %d sleeps, sleeping %v", sleeps, sleeping)
	}
	if pid(sw, "a") != pidA || !mocktest.Alive(pidA) {
		t.Fatal("a's process did not stay asleep")
	}
	for round := range 3 {
		use(t, sw, "a")
		if got := states(sw, "a", "b"); got != "a=ready b=asleep" {
			t.Fatalf("round %d, after a: %s", round, got)
		}
		use(t, sw, "b")
		if got := states(sw, "a", "b"); got != "a=asleep b=ready" {
			t.Fatalf("round %d, after b: %s", round, got)
		}
	}
	if pid(sw, "a") != pidA || pid(sw, "b") != pidB || st.Starts() != 2 {
		t.Errorf("%d processes started (pids %d %d, were %d %d), want the first two only", st.Starts(), pid(sw, "a"), pid(sw, "b"), pidA, pidB)
	}
	if _, wakes, _ := mockSleepStats(t, sw, "a"); wakes != 3 {
		t.Errorf("a woken %d times, want 3", wakes)
	}
	a, _ := sw.Status("a")
	if a.WakeTook < 50*time.Millisecond || a.WakeTook > a.StartTook+10*time.Second {
		t.Errorf("a's wake took %v (its start %v), want at least the mock's 50ms", a.WakeTook, a.StartTook)
	}
	if a.AsleepNeed.RAM < 64<<20 {
		t.Errorf("a is planned to keep %d asleep, less than its declared 64MiB", a.AsleepNeed.RAM)
	}
	var wakes int
	for _, e := range log.of(events.Start) {
		if e.Data["wake"] == true {
			wakes++
		}
	}
	// The last sleep's event is published as b, for which it made room,
	// may already be answering.
	mocktest.Eventually(5*time.Second, func() bool { return len(log.of(events.Asleep)) == 7 })
	if n := len(log.of(events.Asleep)); n != 7 || wakes != 6 {
		t.Errorf("%d asleep events and %d wake starts, want 7 and 6", n, wakes)
	}
}

// TestSleepFailureStops: a backend whose sleep fails is stopped instead,
// and that is said, with why.
func TestSleepFailureStops(t *testing.T) {
	sw, _, log := sleepers(t, "-fail-sleep", "")
	use(t, sw, "a")
	pidA := pid(sw, "a")
	use(t, sw, "b")
	if got := states(sw, "a", "b"); got != "a=stopped b=ready" {
		t.Fatalf("after b: %s", got)
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(pidA) }) {
		t.Error("a's process outlived its failed sleep")
	}
	if got := oneSleepFailed(t, log, "sleep", "stop"); len(got) == 1 && !strings.Contains(got[0].Message, "500") {
		t.Errorf("sleep_failed says %q, not the backend's 500", got[0].Message)
	}
}

// TestWakeFailureRestarts: a backend whose wake fails is stopped and
// started afresh, and that is said, with why.
func TestWakeFailureRestarts(t *testing.T) {
	sw, st, log := sleepers(t, "-fail-wake", "")
	pidA := aThenB(t, sw)
	use(t, sw, "a")
	if got := states(sw, "a", "b"); got != "a=ready b=asleep" {
		t.Fatalf("after a: %s", got)
	}
	if pid(sw, "a") == pidA || mocktest.Alive(pidA) || st.Starts() != 3 {
		t.Errorf("a's pid %d (was %d, alive %v), %d starts: want a new process", pid(sw, "a"), pidA, mocktest.Alive(pidA), st.Starts())
	}
	oneSleepFailed(t, log, "wake", "restart")
}

// TestAsleepLeaves: an asleep backend is stopped by an unload, by its
// ttl, and by hotswap closing; none is left behind.
func TestAsleepLeaves(t *testing.T) {
	sw, _, _ := sleepers(t, "", "")
	pidA := aThenB(t, sw)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sw.Unload(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	if got := states(sw, "a", "b"); got != "a=stopped b=ready" || mocktest.Alive(pidA) {
		t.Errorf("after unloading a asleep: %s, its process alive %v", got, mocktest.Alive(pidA))
	}

	// Asleep past its ttl, it goes.
	sw2, _, _ := sleepers(t, "", "    ttl: 2s\n")
	pidA = aThenB(t, sw2)
	if st, _ := sw2.Status("a"); st.ExpiresAt.IsZero() {
		t.Error("asleep with a ttl, a says it never expires")
	}
	if !mocktest.Eventually(10*time.Second, func() bool { return state(sw2, "a") == swapper.Stopped }) || !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(pidA) }) {
		t.Errorf("a stayed asleep past its ttl: %s", states(sw2, "a"))
	}

	// Closing stops asleep ones too.
	use(t, sw2, "a") // b asleep now
	pidA, pidB := pid(sw2, "a"), pid(sw2, "b")
	if got := states(sw2, "a", "b"); got != "a=ready b=asleep" {
		t.Fatalf("before closing: %s", got)
	}
	sw2.Close(ctx)
	if mocktest.Alive(pidA) || mocktest.Alive(pidB) {
		t.Errorf("after Close: a alive %v, b (asleep) alive %v", mocktest.Alive(pidA), mocktest.Alive(pidB))
	}
}

// TestAsleepReconfigured: an asleep model whose command a reload changes
// is stopped, not woken later with the old one; the next request starts
// it with the new command.
func TestAsleepReconfigured(t *testing.T) {
	sw, _, _ := sleepers(t, "", "")
	pidA := aThenB(t, sw)
	model := func(name, flags string) string {
		return `  ` + name + `:
    cmd: MOCK -port ${PORT} -hold 300MiB -sleep-mode -wake-time 50ms -progress-interval 0 ` + flags + `
    memory: {ram: 300MiB}
    sleep: {sleep: "POST /sleep?level=1", wake: POST /wake_up, memory: {ram: 64MiB}}
`
	}
	cfg := reconfigured(t, "models:\n"+model("a", "-tokens 3")+model("b", ""))
	sw.Reconfigure(cfg.Models, swapper.Settings{CooldownMax: 10 * time.Second, LimitRAM: 500 << 20})
	if !mocktest.Eventually(10*time.Second, func() bool { return state(sw, "a") == swapper.Stopped && !mocktest.Alive(pidA) }) {
		t.Fatalf("a stayed asleep with its old command: %s", states(sw, "a"))
	}
	use(t, sw, "a")
	if args := strings.Join(cmdline(pid(sw, "a")), " "); !strings.Contains(args, "-tokens 3") {
		t.Errorf("a started again with %q, not its new command", args)
	}
}
