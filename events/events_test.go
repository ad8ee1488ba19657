package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hotswap/hotswap/clock"
)

func TestHub(t *testing.T) {
	h := NewHub(clock.NewFake(time.Unix(100, 0)))
	var heard []string
	h.Listen(func(e Event) { heard = append(heard, e.Type+":"+e.Model) })
	all := h.Subscribe(2, true)
	quiet := h.Subscribe(8, false)
	defer all.Close()
	defer quiet.Close()
	h.Publish(Event{Type: Start, Model: "a"})
	h.Publish(Event{Type: Log, Message: "hello"})
	h.Publish(Event{Type: Ready, Model: "a"}) // all's buffer is full: missed
	if len(heard) != 3 {
		t.Fatalf("listener heard %v", heard)
	}
	if e := <-all.C(); e.Type != Start || !e.Time.Equal(time.Unix(100, 0)) {
		t.Errorf("first event %+v", e)
	}
	if e := <-all.C(); e.Type != Log {
		t.Errorf("second event %+v", e)
	}
	h.Publish(Event{Type: Stop, Model: "a"})
	if e := <-all.C(); e.Type != Dropped || e.Data["count"] != 1 {
		t.Errorf("after a miss %+v", e)
	}
	if e := <-all.C(); e.Type != Stop {
		t.Errorf("then %+v", e)
	}
	var types []string
	for range 3 {
		types = append(types, (<-quiet.C()).Type)
	}
	if types[0] != Start || types[1] != Ready || types[2] != Stop {
		t.Errorf("without logs: %v", types)
	}
	var nilHub *Hub
	nilHub.Publish(Event{Type: Start}) // no watchers, no panic
}

func TestSubscribeAfterReplaysWhatWasMissed(t *testing.T) {
	h := NewHub(nil)
	base := h.Last() // IDs go on from here
	for i := range 3 {
		h.Publish(Event{Type: Start, Model: string(rune('a' + i))})
	}
	// A watcher that saw the first event gets the next two, then the
	// live stream, with nothing repeated and nothing missed.
	sub, past := h.SubscribeAfter(8, false, base+1)
	defer sub.Close()
	if len(past) != 2 || past[0].ID != base+2 || past[0].Model != "b" || past[1].ID != base+3 {
		t.Fatalf("replayed %+v", past)
	}
	h.Publish(Event{Type: Ready, Model: "c"})
	if e := <-sub.C(); e.ID != base+4 || e.Type != Ready {
		t.Errorf("live %+v", e)
	}
	// Up to date: nothing to replay.
	if s, past := h.SubscribeAfter(1, false, h.Last()); len(past) != 0 {
		t.Errorf("up to date, replayed %+v", past)
	} else {
		s.Close()
	}
	// 0 is everything kept.
	if s, past := h.SubscribeAfter(1, false, 0); len(past) != 4 {
		t.Errorf("from 0, replayed %d", len(past))
	} else {
		s.Close()
	}

	// A watcher of the hotswap before a restart: everything, after a
	// word that it missed what the old one did last.
	later := NewHub(clock.NewFake(time.Now().Add(time.Second)))
	later.Publish(Event{Type: Start, Model: "a"})
	s, past := later.SubscribeAfter(1, false, h.Last())
	defer s.Close()
	if len(past) != 2 || past[0].Type != Dropped || past[0].Message != "hotswap restarted" || past[1].Model != "a" ||
		past[1].ID <= h.Last() {
		t.Errorf("after a restart, replayed %+v", past)
	}
}

func TestRecentKeepsTheLatestAndSaysWhatItLost(t *testing.T) {
	h := NewHub(nil)
	base := h.Last()
	for range keepEvents + 10 {
		h.Publish(Event{Type: Start})
	}
	sub, past := h.SubscribeAfter(1, false, base+5)
	defer sub.Close()
	if len(past) != keepEvents+1 || past[0].Type != Dropped || past[0].Data["count"] != uint64(5) {
		t.Fatalf("replayed %d, first %+v", len(past), past[0])
	}
	if past[1].ID != base+11 || past[len(past)-1].ID != base+keepEvents+10 {
		t.Errorf("kept %d..%d", past[1].ID, past[len(past)-1].ID)
	}
}

func TestLogLinesAreKeptApartAndTaggedWithTheirModel(t *testing.T) {
	h := NewHub(nil)
	watch := h.Subscribe(16, true) // log lines are made only while watched
	defer watch.Close()
	log := zap.New(LogCore(h, zapcore.InfoLevel))
	log.Info("starting backend", zap.String("model", "chat"))
	log.Named("backend").With(zap.String("model", "tts")).Info("listening on 8080")
	log.Debug("not at this level")
	log.Info("hotswap listening")
	for range keepLines {
		h.Publish(Event{Type: Log, Message: "filler"})
	}
	h.Publish(Event{Type: Start, Model: "chat"})
	// The lines pushed out the old lines, not the lifecycle events.
	sub, past := h.SubscribeAfter(1, true, 0)
	defer sub.Close()
	// The first three IDs are the first lines, the next keepLines the filler.
	if len(past) != keepLines+1 || past[0].ID != h.first+3 || past[len(past)-1].Type != Start {
		t.Errorf("replayed %d, first %+v, last %+v", len(past), past[0], past[len(past)-1])
	}
	quiet, past := h.SubscribeAfter(1, false, 0)
	defer quiet.Close()
	if len(past) != 1 {
		t.Errorf("without logs, replayed %d", len(past))
	}

	h2 := NewHub(nil)
	w2 := h2.Subscribe(16, true)
	defer w2.Close()
	log = zap.New(LogCore(h2, zapcore.InfoLevel))
	log.Info("starting backend", zap.String("model", "chat"))
	log.Named("backend").With(zap.String("model", "tts")).Info("listening on 8080")
	log.Info("hotswap listening")
	var got []string
	for range 3 {
		e := <-w2.C()
		got = append(got, e.Model+"|"+e.Message)
	}
	want := []string{"chat|starting backend", "tts|listening on 8080", "|hotswap listening"}
	if !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// TestLogFieldsReadAsTheConsoleWritesThem: a log line's fields reach the
// event as a person reads them (a duration as 1.20105ms, not 1201050
// nanoseconds), and every one encodes as JSON, for a field JSON refuses
// (a NaN, a complex number) would end the stream of whoever watches.
func TestLogFieldsReadAsTheConsoleWritesThem(t *testing.T) {
	h := NewHub(nil)
	watch := h.Subscribe(4, true)
	defer watch.Close()
	at := time.Date(2026, 11, 27, 12, 0, 0, 500, time.UTC)
	type odd struct{ Ratio float64 }
	log := zap.New(LogCore(h, zapcore.InfoLevel)).With(zap.Duration("grace", 10*time.Second))
	log.Info("request",
		zap.Duration("took", 1201050*time.Nanosecond),
		zap.Durations("waits", []time.Duration{time.Millisecond, 90 * time.Second}),
		zap.Time("at", at),
		zap.Time("far", time.Date(12026, 1, 1, 0, 0, 0, 0, time.UTC)),
		zap.Strings("evicting", []string{"a", "b"}),
		zap.ByteString("method", []byte("POST")),
		zap.Error(errors.New("exit status 1")),
		zap.Float64("nan", math.NaN()),
		zap.Float64("share", 0.25),
		zap.Complex128("z", complex(1, 2)),
		zap.Int64("bytes", 512),
		zap.Object("inner", zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
			enc.AddDuration("cooldown", 2500*time.Millisecond)
			return nil
		})),
		zap.Any("ratio", odd{math.Inf(1)}),
		zap.Any("models", []string{"x"}),
	)
	e := <-watch.C()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("the event does not encode: %v", err)
	}
	var got struct {
		Data struct {
			Fields map[string]any `json:"fields"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	f := got.Data.Fields
	for key, want := range map[string]any{
		"took":     "1.20105ms",
		"grace":    "10s",
		"waits":    []any{"1ms", "1m30s"},
		"at":       "2026-11-27T12:00:00.0000005Z",
		"far":      "12026-01-01T00:00:00Z",
		"evicting": []any{"a", "b"},
		"method":   "POST",
		"error":    "exit status 1",
		"nan":      "NaN",
		"share":    0.25,
		"z":        "(1+2i)",
		"bytes":    512.0,
		"inner":    map[string]any{"cooldown": "2.5s"},
		"ratio":    "{Ratio:+Inf}",
		"models":   []any{"x"},
	} {
		if fmt.Sprint(f[key]) != fmt.Sprint(want) {
			t.Errorf("%s = %#v, want %#v", key, f[key], want)
		}
	}
}
