package swapper_test

import (
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

// TestKeepAlive: a request's keep_alive (Ollama's) says how long its model
// stays once idle, over the model's ttl, until the next request ends: 0
// sends it away as soon as it is idle, < 0 keeps it past its ttl, a
// duration gives a model without a ttl one. A pinned model stays.
func TestKeepAlive(t *testing.T) {
	sw, _ := memSwapper(t, `
models:
  now: {cmd: "MOCK -port ${PORT} -model a"}
  ever: {cmd: "MOCK -port ${PORT} -model b", ttl: 100ms}
  witness: {cmd: "MOCK -port ${PORT} -model c", ttl: 100ms}
  later: {cmd: "MOCK -port ${PORT} -model d"}
  pinned: {cmd: "MOCK -port ${PORT} -model e", pinned: true}
`, fakeFor(t, 10*gib), nil)
	release := func(model string, keep time.Duration) time.Time {
		t.Helper()
		l := acquire(t, sw, model)
		l.KeepAlive(keep)
		l.Release()
		return time.Now()
	}

	// 0: gone once the request ends, though the model has no ttl; a
	// request still running holds it until it ends (and the last request
	// to end has the last word).
	held := acquire(t, sw, "now")
	release("now", 0)
	if st := state(sw, "now"); st != swapper.Ready {
		t.Fatalf("keep_alive 0 sent away a model still serving a request: %v", st)
	}
	held.KeepAlive(0)
	held.Release()
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "now") == swapper.Stopped }) {
		t.Errorf("keep_alive 0: still %v", state(sw, "now"))
	}

	// -1: it outlives its ttl, which a witness used after it shows has
	// passed; it expires at no time. A later request without keep_alive
	// gives it its ttl back.
	release("ever", -1)
	use(t, sw, "witness")
	if st, _ := sw.Status("witness"); st.ExpiresAt.IsZero() {
		t.Error("a model with a ttl has no expiry")
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "witness") == swapper.Stopped }) {
		t.Fatal("the witness outlived its ttl")
	}
	if st, _ := sw.Status("ever"); st.State != swapper.Ready || !st.ExpiresAt.IsZero() {
		t.Fatalf("keep_alive -1: %v, expires %v", st.State, st.ExpiresAt)
	}
	use(t, sw, "ever")
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "ever") == swapper.Stopped }) {
		t.Error("after a request without keep_alive, the ttl did not apply again")
	}

	// A duration: a model without a ttl leaves once idle that long.
	released := release("later", 300*time.Millisecond)
	st, _ := sw.Status("later")
	if want := st.LastUsed.Add(300 * time.Millisecond); !st.ExpiresAt.Equal(want) {
		t.Errorf("expires at %v, want %v", st.ExpiresAt, want)
	}
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "later") == swapper.Stopped }) {
		t.Error("keep_alive 300ms: never left")
	}
	if took := time.Since(released); took < 300*time.Millisecond {
		t.Errorf("left %v after its request, before its keep_alive", took)
	}

	release("pinned", 0)
	use(t, sw, "witness") // a ttl's worth of time, for the janitor to look
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "witness") == swapper.Stopped }) {
		t.Fatal("the witness outlived its ttl")
	}
	if state(sw, "pinned") != swapper.Ready {
		t.Error("keep_alive 0 sent away a pinned model")
	}
}
