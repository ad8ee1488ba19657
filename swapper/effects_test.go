package swapper

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
)

// TestDecisionsSayNothingUnderTheLock: what a decision has to say (its log
// lines, its events) is noted under the lock, in order, and said only once
// the lock is let go: nobody listening is told anything before.
func TestDecisionsSayNothingUnderTheLock(t *testing.T) {
	mock, err := mocktest.Build(t.TempDir(), "./cmd/mockbackend")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(strings.ReplaceAll(`
ports: 26400-26499
models:
  a: {cmd: "MOCK -port ${PORT} -model a", memory: {ram: 6GiB}}
  b: {cmd: "MOCK -port ${PORT} -model b", memory: {ram: 6GiB}}
  huge: {cmd: "MOCK -port ${PORT} -model huge", memory: {ram: 64GiB}}
`, "MOCK", mock)))
	if err != nil {
		t.Fatal(err)
	}
	mem := probe.NewFake(mock, 10<<30)
	hub := events.NewHub(nil)
	s := New(Options{Models: cfg.Models, Ports: cfg.Ports, Memory: mem, Events: hub})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	l, err := s.acquire(context.Background(), "a", Policy{EvictBusy: true})
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	sub := hub.Subscribe(16, false)
	defer sub.Close()

	// A start of b, which evicts a.
	s.mu.Lock()
	d, err := s.startLocked(s.backends["b"], Policy{Reason: "test"})
	said := append([]effect(nil), s.fx.items...)
	select {
	case e := <-sub.C():
		t.Errorf("%s published under the lock", e.Type)
	default:
	}
	s.unlock()
	if err != nil || len(d.Victims) != 1 || d.Victims[0] != "a" {
		t.Fatalf("the start of b: %+v %v", d, err)
	}
	want := []string{"event evict a", "log info starting", "event start b"}
	if got := describe(said); !equal(got, want) {
		t.Errorf("noted %q, want %q", got, want)
	}
	for _, typ := range []string{events.Evict, events.Start} {
		select {
		case e := <-sub.C():
			if e.Type != typ {
				t.Errorf("published %s, want %s", e.Type, typ)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s was not published once the lock was let go", typ)
		}
	}

	// A model that can never fit: refused, with a warning and an event.
	s.mu.Lock()
	_, err = s.startLocked(s.backends["huge"], Policy{})
	said = append([]effect(nil), s.fx.items...)
	s.unlock()
	if err == nil {
		t.Fatal("huge was not refused")
	}
	if got, want := describe(said), []string{"log warn refusing model: not enough memory", "event refuse huge"}; !equal(got, want) {
		t.Errorf("noted %q, want %q", got, want)
	}
}

func describe(fx []effect) []string {
	var out []string
	for _, e := range fx {
		if e.event != nil {
			out = append(out, "event "+e.event.Type+" "+e.event.Model)
		} else {
			out = append(out, "log "+e.level.String()+" "+e.msg)
		}
	}
	return out
}

func equal(a, b []string) bool { return strings.Join(a, "|") == strings.Join(b, "|") }
