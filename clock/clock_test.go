package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrderWhenAdvanced(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewFake(start)
	late, early := c.NewTimer(2*time.Second), c.NewTimer(time.Second)
	ran := make(chan time.Time, 1)
	c.AfterFunc(1500*time.Millisecond, func() { ran <- c.Now() })
	c.Advance(999 * time.Millisecond)
	select {
	case <-early.C():
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Millisecond)
	if got := <-early.C(); !got.Equal(start.Add(time.Second)) {
		t.Errorf("fired at %s", got)
	}
	c.Advance(time.Second)
	<-late.C()
	if got := <-ran; got.Before(start.Add(1500 * time.Millisecond)) {
		t.Errorf("AfterFunc ran at %s", got)
	}
	if c.Timers() != 0 {
		t.Errorf("%d timers still armed", c.Timers())
	}
}

func TestFakeStopAndReset(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	tm := c.NewTimer(time.Second)
	if !tm.Stop() || tm.Stop() {
		t.Fatal("Stop reported wrongly")
	}
	c.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("a stopped timer fired")
	default:
	}
	tm.Reset(time.Second)
	tm.Reset(2 * time.Second) // once armed, not twice
	c.Advance(2 * time.Second)
	<-tm.C()
	c.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("fired twice")
	default:
	}
	if !c.BlockUntil(0, time.Second) {
		t.Fatal("BlockUntil(0)")
	}
	go c.NewTimer(time.Minute)
	if !c.BlockUntil(1, 5*time.Second) {
		t.Fatal("BlockUntil did not see the new timer")
	}
}
