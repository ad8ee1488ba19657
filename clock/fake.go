package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a clock that moves only when told to (Advance, Set). Timers due
// by then fire in the order of their times; AfterFunc callbacks run on
// their own goroutines, as with the real clock.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	// waiters are woken whenever a timer is made, so that a test can wait
	// until its subject is waiting on the clock (see BlockUntil).
	changed chan struct{}
}

// NewFake returns a fake clock set at start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, changed: make(chan struct{})}
}

type fakeTimer struct {
	c      *Fake
	at     time.Time
	ch     chan time.Time
	f      func()
	armed  bool
	listed bool // in c.timers
}

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) NewTimer(d time.Duration) Timer {
	return f.add(d, make(chan time.Time, 1), nil)
}

func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	return f.add(d, nil, fn)
}

func (f *Fake) add(d time.Duration, ch chan time.Time, fn func()) *fakeTimer {
	f.mu.Lock()
	t := &fakeTimer{c: f, at: f.now.Add(d), ch: ch, f: fn, armed: true, listed: true}
	f.timers = append(f.timers, t)
	f.notifyLocked()
	f.mu.Unlock()
	if d <= 0 {
		f.Advance(0)
	}
	return t
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Timers is how many timers are armed.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.timers {
		if t.armed {
			n++
		}
	}
	return n
}

// BlockUntil waits until n timers are armed, or timeout passes (real time);
// it reports whether they were.
func (f *Fake) BlockUntil(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		f.mu.Lock()
		armed := 0
		for _, t := range f.timers {
			if t.armed {
				armed++
			}
		}
		changed := f.changed
		f.mu.Unlock()
		if armed >= n {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-changed:
		case <-time.After(min(left, 10*time.Millisecond)):
		}
	}
}

// Advance moves the clock d forward, firing the timers due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	var due []*fakeTimer
	kept := f.timers[:0]
	for _, t := range f.timers {
		switch {
		case !t.armed:
			t.listed = false
		case !t.at.After(f.now):
			t.armed, t.listed = false, false
			due = append(due, t)
		default:
			kept = append(kept, t)
		}
	}
	f.timers = kept
	now := f.now
	f.mu.Unlock()
	sort.SliceStable(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		if t.f != nil {
			go t.f()
			continue
		}
		select {
		case t.ch <- now:
		default:
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	was := t.armed
	t.at = t.c.now.Add(d)
	t.armed = true
	if !t.listed {
		t.listed = true
		t.c.timers = append(t.c.timers, t)
	}
	t.c.notifyLocked()
	t.c.mu.Unlock()
	if d <= 0 {
		t.c.Advance(0)
	}
	return was
}
