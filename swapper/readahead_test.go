package swapper_test

import (
	"context"
	"os"
	"path/filepath"
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
	got := make(chan error, 1)
	go func() {
		l, err := sw.Acquire(context.Background(), "b")
		if err == nil {
			l.Release()
		}
		got <- err
	}()
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
