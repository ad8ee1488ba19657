package swapper_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/swapper"
)

// reconfigured parses text as newSwapper does, for a reload.
func reconfigured(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("ports: 21000-21999\n" + strings.ReplaceAll(text, "MOCK", mockExe)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func settings(cfg *config.Config) swapper.Settings {
	return swapper.Settings{CooldownMax: cfg.Memory.CooldownMax, DrainTimeout: cfg.Scheduling.DrainTimeout}
}

const threeIdle = `
models:
  idle: {cmd: "MOCK -port ${PORT} -model idle"}
  busy: {cmd: "MOCK -port ${PORT} -model busy"}
  same: {cmd: "MOCK -port ${PORT} -model same"}
`

// TestChangedModelRestartsWhenIdle: an idle model whose command changed is
// restarted with it at once; a busy one once its request is done; one
// whose command did not change is left as it is.
func TestChangedModelRestartsWhenIdle(t *testing.T) {
	sw, _, _ := newSwapper(t, threeIdle)
	acquire(t, sw, "idle").Release()
	lease := acquire(t, sw, "busy")
	acquire(t, sw, "same").Release()
	idlePid, busyPid, samePid := pid(sw, "idle"), pid(sw, "busy"), pid(sw, "same")

	next := reconfigured(t, `
models:
  idle: {cmd: "MOCK -port ${PORT} -model idle -tokens 3"}
  busy: {cmd: "MOCK -port ${PORT} -model busy -tokens 3"}
  same: {cmd: "MOCK -port ${PORT} -model same", ttl: 1h}
`)
	sw.Reconfigure(next.Models, settings(next))
	if !mocktest.Eventually(10*time.Second, func() bool {
		return state(sw, "idle") == swapper.Ready && pid(sw, "idle") != idlePid
	}) {
		t.Fatalf("idle was not restarted: %s, pid %d (was %d)", state(sw, "idle"), pid(sw, "idle"), idlePid)
	}
	if mocktest.Alive(idlePid) {
		t.Error("idle's old process is alive")
	}
	if !strings.Contains(strings.Join(cmdline(pid(sw, "idle")), " "), "-tokens 3") {
		t.Errorf("idle runs %q", cmdline(pid(sw, "idle")))
	}
	if pid(sw, "busy") != busyPid || state(sw, "busy") != swapper.Ready {
		t.Errorf("busy was touched under its request: %s pid %d", state(sw, "busy"), pid(sw, "busy"))
	}
	lease.Release()
	if !mocktest.Eventually(10*time.Second, func() bool {
		return state(sw, "busy") == swapper.Ready && pid(sw, "busy") != busyPid
	}) {
		t.Fatalf("busy was not restarted once idle: %s", state(sw, "busy"))
	}
	if pid(sw, "same") != samePid {
		t.Error("same was restarted for a ttl")
	}
}

func cmdline(pid int) []string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// TestTTLChangeAppliesAtOnce: a model loaded without a ttl goes once a
// reload gives it one, without a restart in between.
func TestTTLChangeAppliesAtOnce(t *testing.T) {
	sw, st := memSwapper(t, threeIdle, nil, nil)
	acquire(t, sw, "idle").Release()
	next := reconfigured(t, strings.Replace(threeIdle, `-model idle"}`, `-model idle", ttl: 100ms}`, 1))
	sw.Reconfigure(next.Models, settings(next))
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "idle") == swapper.Stopped }) {
		t.Errorf("idle is %s past its new ttl", state(sw, "idle"))
	}
	if n := st.Starts(); n != 1 {
		t.Errorf("%d starts: the ttl change restarted idle", n)
	}
}

// TestRemoveDrainsThenForgets: a removed model finishes its request, then
// stops and is unknown; one added back before Remove is kept.
func TestRemoveDrainsThenForgets(t *testing.T) {
	sw, _, _ := newSwapper(t, threeIdle)
	lease := acquire(t, sw, "busy")
	p := pid(sw, "busy")
	next := reconfigured(t, `
models:
  idle: {cmd: "MOCK -port ${PORT} -model idle"}
  same: {cmd: "MOCK -port ${PORT} -model same"}
  added: {cmd: "MOCK -port ${PORT} -model added"}
`)
	sw.Reconfigure(next.Models, settings(next))
	acquire(t, sw, "added").Release()
	removed := make(chan error, 1)
	go func() { removed <- sw.Remove(context.Background(), "busy") }()
	if !mocktest.Eventually(5*time.Second, func() bool { return state(sw, "busy") == swapper.Draining }) {
		t.Fatalf("busy is %s while being removed", state(sw, "busy"))
	}
	select {
	case err := <-removed:
		t.Fatalf("Remove returned under a request: %v", err)
	default:
	}
	lease.Release()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if mocktest.Alive(p) {
		t.Error("busy's process outlived its removal")
	}
	if _, err := sw.Acquire(context.Background(), "busy"); !errors.Is(err, swapper.ErrUnknownModel) {
		t.Errorf("acquire of a removed model: %v", err)
	}
	// Removed from the configuration and back before Remove ran: kept.
	sw.Reconfigure(reconfigured(t, threeIdle).Models, swapper.Settings{})
	if err := sw.Remove(context.Background(), "idle"); err != nil {
		t.Fatal(err)
	}
	acquire(t, sw, "idle").Release()
}
