package swapper_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

// snapshotOf is what a dry run must leave as it was: every model's state,
// process and use, the memory counted as reserved, and the starts made.
func snapshotOf(sw *swapper.Swapper) (map[string]string, []swapper.DeviceReport) {
	out := map[string]string{}
	for _, st := range sw.Statuses() {
		out[st.Model] = st.State.String() + "/" + st.Device + "/" + st.LastUsed.String() + "/" + st.Since.String()
	}
	return out, sw.Memory(false)
}

func TestDryRun(t *testing.T) {
	const twoSmall = `
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 3GiB}}
  d: {cmd: "MOCK -port ${PORT} -model d", memory: {ram: 4GiB}}
`
	for _, tc := range []struct {
		name  string
		text  string
		ram   int64
		setup func(t *testing.T, sw *swapper.Swapper) (cleanup func())
		model string
		check func(t *testing.T, d swapper.DryRun)
		errIs error
	}{{
		name: "fits now", text: fiveModels, ram: 10 * gib, model: "a",
		check: func(t *testing.T, d swapper.DryRun) {
			if d.Action != swapper.PlanStart || d.Device != "ram" || len(d.Evict) != 0 || len(d.WaitFor) != 0 {
				t.Errorf("%+v: want a start on ram, evicting nothing", d)
			}
			if d.Need.RAM != 3*gib {
				t.Errorf("need %d", d.Need.RAM)
			}
		},
	}, {
		name: "already ready", text: fiveModels, ram: 10 * gib, model: "a",
		setup: func(t *testing.T, sw *swapper.Swapper) func() { use(t, sw, "a"); return nil },
		check: func(t *testing.T, d swapper.DryRun) {
			if d.Action != swapper.PlanReady || d.Device != "ram" {
				t.Errorf("%+v: want ready", d)
			}
		},
	}, {
		name: "must evict the least recently used", text: fiveModels, ram: 10 * gib, model: "d",
		setup: func(t *testing.T, sw *swapper.Swapper) func() {
			use(t, sw, "a")
			use(t, sw, "b")
			use(t, sw, "c")
			use(t, sw, "a") // b is now the least recently used
			return nil
		},
		check: func(t *testing.T, d swapper.DryRun) {
			if d.Action != swapper.PlanStart || len(d.Evict) != 1 || d.Evict[0].Model != "b" {
				t.Fatalf("%+v: want a start evicting b", d)
			}
			e := d.Evict[0]
			if e.Busy || e.RAM != 3*gib || e.LRURank != 0 || !strings.Contains(e.Reason, "least recently used") || d.Why == "" {
				t.Errorf("eviction %+v, why %q", e, d.Why)
			}
			if !d.ExpectedWaitKnown || d.ExpectedWaitS <= 0 {
				t.Errorf("expected wait %v (known %v): d started before, its start time is learned", d.ExpectedWaitS, d.ExpectedWaitKnown)
			}
		},
	}, {
		name: "would wait for a drain", text: twoSmall, ram: 5 * gib, model: "d",
		setup: func(t *testing.T, sw *swapper.Swapper) func() {
			l := acquire(t, sw, "a")
			done := make(chan error, 1)
			go func() { done <- sw.Unload(context.Background(), "a", false) }()
			if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "a") == swapper.Draining }) {
				t.Fatal("a never began to drain")
			}
			return func() {
				l.Release()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}
		},
		check: func(t *testing.T, d swapper.DryRun) {
			if d.Action != swapper.PlanWait || len(d.WaitFor) != 1 {
				t.Fatalf("%+v: want a wait for a's drain", d)
			}
			w := d.WaitFor[0]
			if w.Kind != "drain" || w.Model != "a" || w.InFlight != 1 || w.AtMostS == nil {
				t.Errorf("wait %+v", w)
			}
			if d.ExpectedWaitKnown {
				t.Error("a drain's length is not known")
			}
		},
	}, {
		name: "refused with figures", text: fiveModels, ram: 10 * gib, model: "huge",
		setup: func(t *testing.T, sw *swapper.Swapper) func() { use(t, sw, "a"); return nil },
		check: func(t *testing.T, d swapper.DryRun) {
			r := d.Refused
			if d.Action != swapper.PlanRefuse || r == nil {
				t.Fatalf("%+v: want a refusal", d)
			}
			if r.Device != "ram" || r.Need != 20*gib || r.Free != 7*gib || r.Freeable != 3*gib ||
				!strings.Contains(r.Message, "cannot be started") {
				t.Errorf("refusal %+v", r)
			}
		},
	}, {
		name: "unknown model", text: fiveModels, ram: 10 * gib, model: "nope", errIs: swapper.ErrUnknownModel,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fake := fakeFor(t, tc.ram)
			sw, st := memSwapper(t, tc.text, fake, nil)
			if tc.name == "must evict the least recently used" {
				use(t, sw, "d") // learn d's start time
				use(t, sw, "a")
			}
			var cleanup func()
			if tc.setup != nil {
				cleanup = tc.setup(t, sw)
			}
			starts := st.Starts()
			before, mem := snapshotOf(sw)
			d, err := sw.DryRun(tc.model, swapper.DryRunOptions{})
			after, mem2 := snapshotOf(sw)
			if !reflect.DeepEqual(before, after) || !reflect.DeepEqual(mem, mem2) || st.Starts() != starts {
				t.Errorf("the dry run changed something:\n%v\n%v\n%+v\n%+v\nstarts %d -> %d", before, after, mem, mem2, starts, st.Starts())
			}
			if cleanup != nil {
				cleanup()
			}
			if tc.errIs != nil {
				if !errors.Is(err, tc.errIs) {
					t.Fatalf("err %v, want %v", err, tc.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, d)
		})
	}
}

// A busy model in the way: the request waits for it (up to max_wait).
func TestDryRunWaitsBehindBusy(t *testing.T) {
	sw, st := memSwapper(t, fiveModels, fakeFor(t, 10*gib), nil)
	use(t, sw, "a")
	use(t, sw, "b")
	use(t, sw, "c")
	busy := func(m string) bool { return true }
	starts := st.Starts()
	d, err := sw.DryRun("d", swapper.DryRunOptions{Busy: busy, MaxWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != swapper.PlanWait || len(d.Evict) != 1 || d.Evict[0].Model != "a" || !d.Evict[0].Busy {
		t.Fatalf("%+v: want a wait, then a (busy, least recently used) evicted", d)
	}
	if len(d.WaitFor) != 1 || d.WaitFor[0].Kind != "busy" || d.WaitFor[0].AtMostS == nil || *d.WaitFor[0].AtMostS != 2 {
		t.Errorf("wait %+v", d.WaitFor)
	}
	if st.Starts() != starts || state(sw, "a") != swapper.Ready {
		t.Error("the dry run changed something")
	}
}
