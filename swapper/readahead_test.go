package swapper_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/swapper"
)

// aheadLog keeps the readahead events.
type aheadLog struct {
	mu  sync.Mutex
	got []events.Event
}

func (l *aheadLog) listen(e events.Event) {
	if e.Type == events.ReadAhead {
		l.mu.Lock()
		l.got = append(l.got, e)
		l.mu.Unlock()
	}
}

func (l *aheadLog) events() []events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]events.Event(nil), l.got...)
}

// TestStartThatWaitsReadsAhead: b's start waits for a to stop and its
// memory to come back; meanwhile b's GGUF file (named in its cmd) is read
// into the cache, within the RAM the plan leaves free, and said so.
func TestStartThatWaitsReadsAhead(t *testing.T) {
	dir := t.TempDir()
	weights := filepath.Join(dir, "b.gguf")
	const size = 3<<20 + 5
	if err := os.WriteFile(weights, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	text := `
models:
  a: {cmd: "MOCK -port ${PORT} -model a -fail-message ` + weights + `", memory: {ram: 6GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b -fail-message ` + weights + `", memory: {ram: 6GiB}}
`
	fake := fakeFor(t, 10*gib)
	fake.Script("a", probe.Usage{RAM: 6 * gib})
	fake.Script("b", probe.Usage{RAM: 6 * gib})
	hub := events.NewHub(nil)
	ahead := &aheadLog{}
	hub.Listen(ahead.listen)
	sw, _ := memSwapper(t, text, fake, func(o *swapper.Options) { o.Events = hub })

	use(t, sw, "a") // nothing to wait for: nothing read ahead
	if got := ahead.events(); len(got) != 0 {
		t.Fatalf("a start that waits for nothing read ahead: %v", got)
	}
	pidA := pid(sw, "a")
	fake.Linger(true) // a's memory stays "in use" after it exits: b waits
	lookAt(t, fake)
	got := useLater(sw, "b")
	if !mocktest.Eventually(5*time.Second, func() bool { return !mocktest.Alive(pidA) }) {
		t.Fatal("a was not stopped")
	}
	// While b waits for the memory, its file is read.
	if !mocktest.Eventually(5*time.Second, func() bool { return len(ahead.events()) == 2 }) {
		t.Fatalf("no read-ahead while b waited: %v", ahead.events())
	}
	select {
	case err := <-got:
		t.Fatalf("b did not wait (err %v)", err)
	default:
	}
	evs := ahead.events()
	begin, end := evs[0], evs[1]
	if begin.Model != "b" || begin.Data["done"] != false || begin.Data["total"] != int64(size) {
		t.Errorf("first event %+v, want b's begin with total %d", begin, size)
	}
	// The budget: 10GiB, less b's 6GiB, a's 6GiB coming back.
	if end.Model != "b" || end.Data["done"] != true || end.Data["bytes"] != int64(size) ||
		end.Data["complete"] != true || end.Data["budget"] != 4*gib {
		t.Errorf("last event %+v, want all %d bytes of b.gguf read within 4GiB", end.Data, size)
	}
	if files, _ := end.Data["files"].([]string); len(files) != 1 || files[0] != weights {
		t.Errorf("files %v, want %s", end.Data["files"], weights)
	}
	// The status says it too (/admin/models shows it).
	if st, _ := sw.Status("b"); st.ReadAhead != (swapper.ReadAhead{Bytes: size, Total: size, Done: true}) {
		t.Errorf("b's status says read ahead %+v, want all %d bytes, done", st.ReadAhead, size)
	}
	if st, _ := sw.Status("a"); st.ReadAhead != (swapper.ReadAhead{}) {
		t.Errorf("a read ahead %+v, though its start waited for nothing", st.ReadAhead)
	}
	fake.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// weightsFile writes a model file of size bytes and returns its path.
func weightsFile(t *testing.T, size int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.gguf")
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// prefetchRig is a running and measured, b stopped with its weights in
// a file, on a fake machine of ram bytes: what a request for b queued
// behind a finds.
func prefetchRig(t *testing.T, ram int64, needB string, weights string, tweak func(*swapper.Options)) (*swapper.Swapper, *probe.Fake) {
	t.Helper()
	text := `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 6GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", files: [` + weights + `], memory: {ram: ` + needB + `}}
`
	fake := fakeFor(t, ram)
	fake.Script("a", probe.Usage{RAM: 6 * gib})
	fake.Script("b", probe.Usage{RAM: 6 * gib})
	sw, _ := memSwapper(t, text, fake, tweak)
	use(t, sw, "a")
	// Measured: the budget is judged on what a uses, not on a load's guess.
	if !mocktest.Eventually(5*time.Second, func() bool {
		st, _ := sw.Status("a")
		return st.Usage.RAM == 6*gib
	}) {
		t.Fatal("a was not measured")
	}
	return sw, fake
}

// TestPrefetchReadsWithinWhatIsFree: a prefetch for b, whose start would
// stop a, reads b's file while a stays loaded, no more than the RAM free
// beside a, nor than the plan would leave free; it says so as queued.
func TestPrefetchReadsWithinWhatIsFree(t *testing.T) {
	const mib = int64(1) << 20
	const size = 3<<20 + 5
	for _, c := range []struct {
		name   string
		ram    int64
		needB  string
		budget int64
		read   int64
		why    string
	}{
		{"free now binds", 6*gib + 2*mib, "6GiB", 2 * mib, 2 * mib, "only 2MiB is free beside a"},
		{"the plan binds", 10 * gib, "8GiB", 2 * gib, size, "b leaves 2GiB of the 10 once a has gone"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hub := events.NewHub(nil)
			ahead := &aheadLog{}
			hub.Listen(ahead.listen)
			sw, _ := prefetchRig(t, c.ram, c.needB, weightsFile(t, size), func(o *swapper.Options) { o.Events = hub })
			stop := sw.Prefetch("b")
			defer stop()
			if !mocktest.Eventually(5*time.Second, func() bool { return len(ahead.events()) == 2 }) {
				t.Fatalf("no prefetch: %v", ahead.events())
			}
			begin, end := ahead.events()[0], ahead.events()[1]
			if begin.Model != "b" || begin.Data["queued"] != true || begin.Data["done"] != false {
				t.Errorf("first event %+v, want b's queued begin", begin)
			}
			if end.Data["queued"] != true || end.Data["done"] != true || end.Data["budget"] != c.budget ||
				end.Data["bytes"] != c.read || end.Data["complete"] != true {
				t.Errorf("last event %+v, want %d bytes read within a budget of %d (%s)", end.Data, c.read, c.budget, c.why)
			}
			if st, _ := sw.Status("b"); st.ReadAhead != (swapper.ReadAhead{Bytes: c.read, Total: c.read, Done: true, Queued: true}) {
				t.Errorf("b's status says read ahead %+v", st.ReadAhead)
			}
			if got := states(sw, "a", "b"); got != "a=ready b=stopped" {
				t.Errorf("%s: a prefetch decides nothing", got)
			}
		})
	}
}

// TestPrefetchReadsNothing: without a memory probe nothing is known to be
// free, and nothing is read; nor is anything read for a model that is not
// stopped. Close waits for every read-ahead, so the log is then complete.
func TestPrefetchReadsNothing(t *testing.T) {
	weights := weightsFile(t, 1<<20)
	hub := events.NewHub(nil)
	ahead := &aheadLog{}
	hub.Listen(ahead.listen)
	cfgText := `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", files: [` + weights + `], memory: {ram: 1GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", files: [` + weights + `], memory: {ram: 1GiB}}
`
	sw, _ := memSwapper(t, cfgText, nil, func(o *swapper.Options) { o.Events = hub })
	use(t, sw, "a")
	stop := sw.Prefetch("b")
	sw.Prefetch("a")
	sw.Close(context.Background())
	stop()
	if got := ahead.events(); len(got) != 0 {
		t.Errorf("read ahead without a memory probe, or for a ready model: %v", got)
	}
	if st, _ := sw.Status("b"); st.ReadAhead != (swapper.ReadAhead{}) {
		t.Errorf("b's status says read ahead %+v", st.ReadAhead)
	}
}

// gate holds a read-ahead where it begins: its first event's listener
// waits until the test opens it, so that the test acts while the
// read-ahead runs, before it has read a byte.
type gate struct {
	began chan struct{}
	open  chan struct{}
}

func newGate() *gate { return &gate{began: make(chan struct{}, 1), open: make(chan struct{})} }

func (g *gate) listen(e events.Event) {
	if e.Type == events.ReadAhead && e.Data["queued"] == true && e.Data["done"] == false {
		g.began <- struct{}{}
		<-g.open
	}
}

// TestPrefetchStops: stopped while it reads (no request waits any more),
// a prefetch ends at once and says why.
func TestPrefetchStops(t *testing.T) {
	const size = 3<<20 + 5
	hub := events.NewHub(nil)
	ahead := &aheadLog{}
	hub.Listen(ahead.listen)
	g := newGate()
	hub.Listen(g.listen)
	sw, _ := prefetchRig(t, 10*gib, "6GiB", weightsFile(t, size), func(o *swapper.Options) { o.Events = hub })
	stop := sw.Prefetch("b")
	<-g.began
	stop()
	close(g.open)
	if !mocktest.Eventually(5*time.Second, func() bool { return len(ahead.events()) == 2 }) {
		t.Fatalf("the prefetch did not end: %v", ahead.events())
	}
	end := ahead.events()[1]
	if end.Data["queued"] != true || end.Data["done"] != true || end.Data["bytes"] != int64(0) ||
		end.Data["complete"] != false || end.Data["error"] != "no request waits for it any more" {
		t.Errorf("last event %+v, want b's prefetch stopped before its first read, and why", end.Data)
	}
	if st, _ := sw.Status("b"); st.ReadAhead != (swapper.ReadAhead{Total: size, Done: true, Queued: true}) {
		t.Errorf("b's status says read ahead %+v", st.ReadAhead)
	}
}

// TestPrefetchHandsOverToTheStart: b's start is decided while its
// prefetch reads; the prefetch stops, and the start's own read-ahead
// reads b's file, after the prefetch has ended, never beside it. The
// status then tells of the start's.
func TestPrefetchHandsOverToTheStart(t *testing.T) {
	const size = 3<<20 + 5
	hub := events.NewHub(nil)
	ahead := &aheadLog{}
	hub.Listen(ahead.listen)
	g := newGate()
	hub.Listen(g.listen)
	sw, fake := prefetchRig(t, 10*gib, "6GiB", weightsFile(t, size), func(o *swapper.Options) { o.Events = hub })
	fake.Linger(true) // a's memory stays "in use" after it exits: b's start waits
	lookAt(t, fake)
	stop := sw.Prefetch("b")
	defer stop() // harmless once the start has taken over; the router calls it too
	<-g.began
	got := useLater(sw, "b")
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "b") == swapper.Starting }) {
		t.Fatal("b's start was not decided")
	}
	close(g.open)
	if !mocktest.Eventually(5*time.Second, func() bool { return len(ahead.events()) == 4 }) {
		t.Fatalf("read-aheads %v, want the prefetch's and the start's", ahead.events())
	}
	evs := ahead.events()
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, fmt.Sprintf("queued=%v done=%v", e.Data["queued"], e.Data["done"]))
	}
	want := []string{"queued=true done=false", "queued=true done=true", "queued=false done=false", "queued=false done=true"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("read-aheads %v, want %v: the prefetch ends before the start's begins", kinds, want)
	}
	if evs[1].Data["error"] != "its start was decided; the start reads ahead from here on" {
		t.Errorf("the prefetch's end %+v, want it stopped by the start", evs[1].Data)
	}
	if evs[3].Data["bytes"] != int64(size) || evs[3].Data["complete"] != true {
		t.Errorf("the start's read-ahead %+v, want all of b's file", evs[3].Data)
	}
	if st, _ := sw.Status("b"); st.ReadAhead != (swapper.ReadAhead{Bytes: size, Total: size, Done: true}) {
		t.Errorf("b's status says read ahead %+v, want the start's", st.ReadAhead)
	}
	fake.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestReadAheadOff: a model with read_ahead: false reads nothing ahead
// when its start waits, where the same start of a model without it does.
func TestReadAheadOff(t *testing.T) {
	weights := filepath.Join(t.TempDir(), "w.gguf")
	if err := os.WriteFile(weights, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	text := `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 6GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b -fail-message ` + weights + `", memory: {ram: 6GiB}}
  c: {cmd: "MOCK -port ${PORT} -model c -fail-message ` + weights + `", memory: {ram: 6GiB}, read_ahead: false}
`
	fake := fakeFor(t, 10*gib)
	for _, m := range []string{"a", "b", "c"} {
		fake.Script(m, probe.Usage{RAM: 6 * gib})
	}
	hub := events.NewHub(nil)
	ahead := &aheadLog{}
	hub.Listen(ahead.listen)
	sw, _ := memSwapper(t, text, fake, func(o *swapper.Options) { o.Events = hub })
	use(t, sw, "a")
	use(t, sw, "b") // waits for a to leave: reads ahead
	if !mocktest.Eventually(5*time.Second, func() bool { return len(ahead.events()) == 2 }) {
		t.Fatalf("b (read_ahead on) read nothing ahead: %v", ahead.events())
	}
	use(t, sw, "c") // waits for b to leave: reads nothing
	for _, e := range ahead.events() {
		if e.Model == "c" {
			t.Errorf("c (read_ahead: false) read ahead: %+v", e)
		}
	}
	if st, _ := sw.Status("c"); st.ReadAhead != (swapper.ReadAhead{}) {
		t.Errorf("c's status says read ahead %+v", st.ReadAhead)
	}
}
