package events

import (
	"go.uber.org/zap/zapcore"
)

// LogCore is a zap core that publishes each log line at level or above
// to h, as a Log event, while some subscriber asks for log lines: the log
// costs nothing more when nobody watches it.
func LogCore(h *Hub, level zapcore.LevelEnabler) zapcore.Core {
	return &logCore{h: h, level: level}
}

type logCore struct {
	h      *Hub
	level  zapcore.LevelEnabler
	fields []zapcore.Field
}

func (c *logCore) Enabled(l zapcore.Level) bool {
	return c.h != nil && c.h.logSubs.Load() > 0 && c.level.Enabled(l)
}

func (c *logCore) With(fields []zapcore.Field) zapcore.Core {
	return &logCore{h: c.h, level: c.level, fields: append(c.fields[:len(c.fields):len(c.fields)], fields...)}
}

func (c *logCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *logCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	data := map[string]any{"level": e.Level.String()}
	if e.LoggerName != "" {
		data["logger"] = e.LoggerName
	}
	if len(enc.Fields) > 0 {
		data["fields"] = enc.Fields
	}
	// A line about one model (a backend's own output among them) is
	// tagged with it, so that watchers can follow one model's lines.
	model, _ := enc.Fields["model"].(string)
	c.h.Publish(Event{Time: e.Time, Type: Log, Model: model, Message: e.Message, Data: data})
	return nil
}

func (c *logCore) Sync() error { return nil }
