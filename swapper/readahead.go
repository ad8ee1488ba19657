package swapper

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/readahead"
)

// aheadBudget is how many bytes of a start's weight files may be read
// ahead: the RAM left free once the plan is carried out (what is free now,
// plus what the victims give back, less what the model needs), so that
// what is read stays in the cache beside the plan rather than pushing
// out what the plan keeps. Without a memory probe nothing is known, and
// nothing is read (0).
func aheadBudget(in planInput, victims []candidate) int64 {
	budget := in.free[ramDevice] - in.ram
	for _, v := range victims {
		budget += v.ram
	}
	return max(0, budget)
}

// readAhead reads b's weight files into the page cache while its start
// waits for its victims to leave and their memory to come back: the disk
// is idle then, and a backend that finds its files cached loads many
// times faster. It runs in the background, outside the lock, within
// dec's budget; the returned stop ends it, and so does the start ending
// (dec.ctx). A start that waits for nothing reads nothing ahead: the
// backend reads its own files at once; nor does a model with read_ahead:
// false.
func (s *Swapper) readAhead(b *backend, dec *decision) (stop func()) {
	if len(dec.victims) == 0 || dec.aheadBudget <= 0 || b.model.NoReadAhead {
		return func() {}
	}
	files := readahead.Find(b.model.Cmd, b.model.Files)
	if len(files) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(dec.ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		model := b.model.ID
		begin := time.Now()
		first := true
		p := readahead.Read(ctx, files, dec.aheadBudget, func(p readahead.Progress) {
			s.mu.Lock()
			b.ahead = ReadAhead{Bytes: p.Bytes, Total: p.Total, Done: p.Done}
			s.unlock()
			if first && !p.Done {
				first = false
				s.log.Info("reading ahead", zap.String("model", model), zap.Strings("files", files),
					zap.String("bytes", config.FormatSize(p.Total)), zap.String("budget", config.FormatSize(dec.aheadBudget)))
				s.opts.Events.Publish(events.Event{Type: events.ReadAhead, Model: model, Data: map[string]any{
					"files": files, "bytes": int64(0), "total": p.Total, "budget": dec.aheadBudget, "done": false}})
			}
		})
		took := time.Since(begin)
		s.mu.Lock()
		b.ahead = ReadAhead{Bytes: p.Bytes, Total: p.Total, Done: true}
		s.unlock()
		fields := []zap.Field{zap.String("model", model), zap.Strings("files", files),
			zap.String("read", config.FormatSize(p.Bytes)), zap.String("of", config.FormatSize(p.Total)),
			zap.Duration("took", took)}
		if p.Err != nil {
			fields = append(fields, zap.NamedError("stopped", p.Err))
		}
		s.log.Info("read ahead", fields...)
		data := map[string]any{"files": files, "bytes": p.Bytes, "total": p.Total,
			"budget": dec.aheadBudget, "seconds": took.Seconds(), "done": true, "complete": p.Bytes == p.Total}
		if p.Err != nil {
			data["error"] = p.Err.Error()
		}
		s.opts.Events.Publish(events.Event{Type: events.ReadAhead, Model: model, Data: data})
	}()
	return cancel
}
