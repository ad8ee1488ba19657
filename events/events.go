// Package events carries what hotswap does (a start decided, a backend
// ready, an eviction and why, a refusal, a crash, a mode switch, a reload,
// log lines) to whoever watches: the /admin/events stream, the metrics,
// the status page. Publishing never waits for a watcher.
package events

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotswap/hotswap/clock"
)

// Event types.
const (
	Start       = "start"        // a start was decided: Model, Data device, evicting, busy, reason
	Ready       = "ready"        // a backend is ready: Model, Data pid, seconds
	Evict       = "evict"        // a model leaves: Model, Data reason, for, busy
	Stop        = "stop"         // a backend has stopped: Model, Data seconds
	Fail        = "fail"         // a start failed: Model, Data cause, error
	Refuse      = "refuse"       // a model cannot fit: Model, Data error
	Crash       = "crash"        // a backend exited on its own: Model, Data exit
	Cooldown    = "cooldown"     // memory came back after evictions: Model, Data seconds
	Asleep      = "asleep"       // a backend was put to sleep rather than stopped: Model, Message reason, Data seconds
	SleepFailed = "sleep_failed" // a sleep or wake failed: Model, Message the error, Data action (sleep or wake), fallback (stop or restart)
	ReadAhead   = "readahead"    // a waiting start, or requests queued for a stopped model (queued), read its weight files ahead: Model, Data files, bytes, total, budget, done (false as it begins), queued, seconds, complete, error
	Footprint   = "footprint"    // a learned footprint grew: Model, Data ram, vram
	Mode        = "mode"         // a mode switch or restore: Data mode, loaded, unloaded, refused
	Reload      = "reload"       // the configuration was reloaded: Data added, removed, changed
	Unload      = "unload"       // an operator unloaded a model: Model
	Log         = "log"          // a log line: Message, Data level and fields
	Dropped     = "dropped"      // a watcher was too slow: Data count of events it missed
)

// Event is one thing that happened.
type Event struct {
	// ID numbers the hub's events in order, so that a watcher that lost
	// its stream can ask for what came after the last one it saw. IDs
	// start from the hub's creation time in microseconds, so that those
	// of a restarted hotswap follow the ones before. A Dropped event has
	// none.
	ID      uint64         `json:"id,omitempty"`
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
	clock     clock.Clock
	logSubs   atomic.Int32 // subscribers that want log lines
	first     uint64       // the first ID to give
	last      uint64       // the last ID given
	// recent keeps the latest events, and lines apart (they come much more
	// often), for watchers that arrive or come back later.
	recent, lines ring
}

// How many events and log lines a hub keeps for late watchers.
const (
	keepEvents = 500
	keepLines  = 1000
)

// ring keeps the last len(buf) events, oldest first from next.
type ring struct {
	buf  []Event
	next int
	full bool
}

func (r *ring) add(e Event, size int) {
	if r.buf == nil {
		r.buf = make([]Event, size)
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % len(r.buf)
	r.full = r.full || r.next == 0
}

// after appends the events kept with an ID above id, oldest first.
func (r *ring) after(out []Event, id uint64) []Event {
	if r.buf == nil {
		return out
	}
	start := 0
	if r.full {
		start = r.next
	}
	for i := range len(r.buf) {
		e := r.buf[(start+i)%len(r.buf)]
		if e.ID > id {
			out = append(out, e)
		}
	}
	return out
}

// oldest is the ID of the oldest event kept, 0 if none.
func (r *ring) oldest() uint64 {
	switch {
	case r.buf == nil || (!r.full && r.next == 0):
		return 0
	case r.full:
		return r.buf[r.next].ID
	default:
		return r.buf[0].ID
	}
}

// NewHub returns a hub that stamps events with c's time (nil: the real
// clock), the clock the rest of hotswap goes by, so that an event's time
// agrees with the times the swapper and router report.
func NewHub(c clock.Clock) *Hub {
	h := &Hub{subs: make(map[*Subscription]struct{}), clock: clock.Or(c)}
	h.first = uint64(max(1, h.clock.Now().UnixMicro()))
	h.last = h.first - 1
	return h
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
		e.Time = h.clock.Now()
	}
	h.last++
	e.ID = h.last
	if e.Type == Log {
		h.lines.add(e, keepLines)
	} else {
		h.recent.add(e, keepEvents)
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
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subscribeLocked(n, logs)
}

func (h *Hub) subscribeLocked(n int, logs bool) *Subscription {
	s := &Subscription{h: h, c: make(chan Event, n), logs: logs}
	h.subs[s] = struct{}{}
	if logs {
		h.logSubs.Add(1)
	}
	return s
}

// SubscribeAfter is Subscribe, and also returns the events kept that
// came after the one with ID after (the whole of what is kept for 0, or
// for an ID from before this hub), oldest first: with the stream they
// miss nothing and repeat nothing. If some of those are no longer kept,
// or after is from before this hub, the first returned is a Dropped
// event (its count is that of the IDs missed, log lines included). Log
// lines are made, and so kept, only while some watcher asks for them:
// otherwise nobody pays for making them.
func (h *Hub) SubscribeAfter(n int, logs bool, after uint64) (*Subscription, []Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.subscribeLocked(n, logs)
	if after >= h.last {
		return s, nil
	}
	var past []Event
	switch oldest := h.recent.oldest(); {
	case after == 0:
	case after < h.first:
		past = append(past, Event{Time: h.clock.Now(), Type: Dropped, Message: "hotswap restarted"})
	case oldest > after+1:
		past = append(past, Event{Time: h.clock.Now(), Type: Dropped, Data: map[string]any{"count": oldest - after - 1}})
	}
	past = h.recent.after(past, after)
	if logs {
		past = h.lines.after(past, after)
		slices.SortStableFunc(past, func(a, b Event) int { return cmp.Compare(a.ID, b.ID) })
	}
	return s, past
}

// Last is the ID of the latest event published (one less than the first
// ID if none).
func (h *Hub) Last() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
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
