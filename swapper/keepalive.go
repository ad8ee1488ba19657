package swapper

import (
	"time"

	"github.com/hotswap/hotswap/events"
)

// keepAlive is a request's word on how long its model stays loaded once
// idle (Ollama's keep_alive): set says it gave one; d < 0 is for ever, 0
// is to leave as soon as idle.
type keepAlive struct {
	set bool
	d   time.Duration
}

// idleLimit is how long b may stay idle before it leaves, and whether it
// ever does: the keep_alive of the request that last gave it back, else
// its ttl (0: never).
func (b *backend) idleLimit() (time.Duration, bool) {
	if b.keep.set {
		return b.keep.d, b.keep.d >= 0
	}
	return b.ttl, b.ttl > 0
}

// expireLocked sends b away for having been idle past its limit.
func (s *Swapper) expireLocked(b *backend, idle time.Duration) {
	reason, why := "ttl", "idle for its ttl ("+idle.String()+")"
	if b.keep.set {
		reason, why = "keep_alive", "idle for its last request's keep_alive ("+idle.String()+")"
	}
	s.publish(events.Event{Type: events.Evict, Model: b.model.ID, Data: map[string]any{"reason": reason}})
	s.leaveLocked(b, why)
}

// KeepAlive says how long the backend stays loaded once this request has
// given it back and it is idle, over the model's ttl, until the next
// request ends: d < 0 for ever, 0 not at all. A pinned model stays
// whatever it says, and any model may still be stopped to make room.
// Called before Release.
func (l *Lease) KeepAlive(d time.Duration) { l.keep = keepAlive{set: true, d: d} }
