package events

import (
	"testing"
	"time"
)

func TestHub(t *testing.T) {
	h := NewHub(func() time.Time { return time.Unix(100, 0) })
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
