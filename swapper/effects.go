package swapper

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hotswap/hotswap/events"
)

// What the owner's decisions have to say (log lines, events) is said once
// the lock is let go, never under it: a slow log writer (a warning syncs
// stderr) or a slow event listener would otherwise hold up every request
// waiting for the lock, the router's included. Code under the lock says
// it with say and publish, which only note it; unlock lets go of the lock
// and then carries it out, in the order it was noted. Tests read what a
// decision noted (see pending) rather than log text.

// effects are what decisions made under the lock want done after it.
type effects struct {
	items []effect
}

// effect is one thing to say: a log line, or an event.
type effect struct {
	level  zapcore.Level
	msg    string
	fields []zap.Field
	event  *events.Event
}

// say notes a log line. Call it with s.mu held.
func (s *Swapper) say(level zapcore.Level, msg string, fields ...zap.Field) {
	s.fx.items = append(s.fx.items, effect{level: level, msg: msg, fields: fields})
}

// publish notes an event. Call it with s.mu held.
func (s *Swapper) publish(e events.Event) {
	s.fx.items = append(s.fx.items, effect{event: &e})
}

// unlock lets go of s.mu, then carries out what was noted under it.
func (s *Swapper) unlock() {
	if len(s.fx.items) == 0 {
		s.mu.Unlock()
		return
	}
	fx := s.fx
	s.fx = effects{}
	s.mu.Unlock()
	for _, e := range fx.items {
		if e.event != nil {
			s.opts.Events.Publish(*e.event)
			continue
		}
		if ce := s.log.Check(e.level, e.msg); ce != nil {
			ce.Write(e.fields...)
		}
	}
}
