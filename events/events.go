// Package events carries what hotswap does (a start decided, a backend
// ready, an eviction and why, a refusal, a crash, a mode switch, a reload,
// log lines) to whoever watches: the /admin/events stream, the metrics,
// the status page. Publishing never waits for a watcher.
package events

import (
	"sync"
	"sync/atomic"
	"time"
)

// Event types.
const (
	Start     = "start"     // a start was decided: Model, Data device, evicting, busy, reason
	Ready     = "ready"     // a backend is ready: Model, Data pid, seconds
	Evict     = "evict"     // a model leaves: Model, Data reason, for, busy
	Stop      = "stop"      // a backend has stopped: Model, Data seconds
	Fail      = "fail"      // a start failed: Model, Data cause, error
	Refuse    = "refuse"    // a model cannot fit: Model, Data error
	Crash     = "crash"     // a backend exited on its own: Model, Data exit
	Cooldown  = "cooldown"  // memory came back after evictions: Model, Data seconds
	Footprint = "footprint" // a learned footprint grew: Model, Data ram, vram
	Mode      = "mode"      // a mode switch or restore: Data mode, loaded, unloaded, refused
	Reload    = "reload"    // the configuration was reloaded: Data added, removed, changed
	Unload    = "unload"    // an operator unloaded a model: Model
	Log       = "log"       // a log line: Message, Data level and fields
	Dropped   = "dropped"   // a watcher was too slow: Data count of events it missed
)

// Event is one thing that happened.
type Event struct {
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Model   string         `json:"model,omitempty"`
	Message string         `json:"message,omitempty"`
	Data    map[string]any `json:"data,omitempty"`
}

// Hub hands events to its listeners (called at once, in order, for cheap
// work such as counting) and subscribers (each a buffered stream, for
// work that may be slow such as writing to a client). A nil *Hub is a
// hub without watchers.
type Hub struct {
	mu        sync.Mutex
	listeners []func(Event)
	subs      map[*Subscription]struct{}
	now       func() time.Time
	logSubs   atomic.Int32 // subscribers that want log lines
}

// NewHub returns a hub; now is its clock (nil: time.Now).
func NewHub(now func() time.Time) *Hub {
	if now == nil {
		now = time.Now
	}
	return &Hub{subs: make(map[*Subscription]struct{}), now: now}
}

// Listen has f called with every event, on the publisher's goroutine: f
// must be quick and must not publish.
func (h *Hub) Listen(f func(Event)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.listeners = append(h.listeners, f)
}

// Publish hands e to every listener and subscriber, stamped with the time
// if it has none. A subscriber whose buffer is full misses it, and is told
// how many it missed with its next event.
func (h *Hub) Publish(e Event) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = h.now()
	}
	for _, f := range h.listeners {
		f(e)
	}
	for s := range h.subs {
		if e.Type == Log && !s.logs {
			continue
		}
		if s.missed > 0 {
			select {
			case s.c <- Event{Time: e.Time, Type: Dropped, Data: map[string]any{"count": s.missed}}:
				s.missed = 0
			default:
				s.missed++
				continue
			}
		}
		select {
		case s.c <- e:
		default:
			s.missed++
		}
	}
}

// Subscription is a stream of events.
type Subscription struct {
	h      *Hub
	c      chan Event
	logs   bool
	missed int
}

// Subscribe returns a stream of the events published from now on, log
// lines included if logs is set, buffering up to n.
func (h *Hub) Subscribe(n int, logs bool) *Subscription {
	s := &Subscription{h: h, c: make(chan Event, n), logs: logs}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s] = struct{}{}
	if logs {
		h.logSubs.Add(1)
	}
	return s
}

// C is the stream.
func (s *Subscription) C() <-chan Event { return s.c }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if _, ok := s.h.subs[s]; ok && s.logs {
		s.h.logSubs.Add(-1)
	}
	delete(s.h.subs, s)
}
