package events

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

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
		data["fields"] = readable(enc.Fields)
	}
	// A line about one model (a backend's own output among them) is
	// tagged with it, so that watchers can follow one model's lines.
	model, _ := enc.Fields["model"].(string)
	c.h.Publish(Event{Time: e.Time, Type: Log, Model: model, Message: e.Message, Data: data})
	return nil
}

func (c *logCore) Sync() error { return nil }

// readable turns a field as zap's map encoder keeps it into what reads
// as the console log writes it, and what JSON can always encode: the map
// encoder keeps a duration as its nanoseconds (took=1201050 on the page)
// and a time, a NaN or a complex number as themselves, which
// encoding/json either shows raw or refuses, and a refusal would end the
// event stream of whoever watches. Maps and lists (zap.Object, zap.Strings,
// zap.Durations, namespaces) are walked, in place.
func readable(v any) any {
	switch v := v.(type) {
	case string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, uintptr, nil:
		return v
	case time.Duration:
		return v.String()
	case time.Time:
		// RFC 3339 as JSON would write it, but for any year, which JSON
		// refuses outside 0-9999.
		return v.Format(time.RFC3339Nano)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'g', -1, 64)
		}
		return v
	case float32:
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return strconv.FormatFloat(float64(v), 'g', -1, 32)
		}
		return v
	case complex128, complex64:
		return fmt.Sprint(v)
	case map[string]any:
		for k, x := range v {
			v[k] = readable(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = readable(x)
		}
		return v
	}
	// zap.Any of anything else (zap.Reflect) is kept as given, for JSON to
	// encode as the console encoder does; what it cannot encode (a NaN
	// inside, a channel) is said in words instead.
	if _, err := json.Marshal(v); err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return v
}
