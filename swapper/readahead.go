package swapper

import (
	"context"
	"errors"
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

// prefetchBudget is how many bytes a prefetch (see Prefetch) may read for
// a model whose start, if decided now, would stop victims: no more than
// the plan leaves free (aheadBudget), so that what is read is still
// cached when the model starts, and no more than the RAM free now, since
// the victims go on serving while the request waits: reading more would
// push their pages out of the cache under them. Without a memory probe,
// nothing is free, and nothing is read (0).
func prefetchBudget(in planInput, victims []candidate) int64 {
	return max(0, min(in.free[ramDevice], aheadBudget(in, victims)))
}

// Why a prefetch ended before it had read everything, for the log and the
// event.
var (
	errStartDecided = errors.New("its start was decided; the start reads ahead from here on")
	errNotWanted    = errors.New("no request waits for it any more")
)

// prefetch is a read-ahead for requests queued for a stopped model (see
// Prefetch), while it runs.
type prefetch struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (p *prefetch) stop() { p.cancel(errNotWanted) }

// Prefetch begins reading model's weight files into the page cache for
// requests queued for it while it is stopped and its start is not yet
// decided: under the batch policy, a request whose model would have to
// stop busy ones waits up to max_wait, and the disk is idle meanwhile. It
// reads in the background, outside the lock, and never waits: stop ends
// it (call it once no request waits for the model any more). It also
// ends when it is done, when the swapper closes, and when the model's
// start is decided: the start's own read-ahead (see readAhead) then takes
// over, once this one has stopped, and finds what was read cached.
//
// It reads within prefetchBudget of the memory as the start would be
// planned now. A model that is not stopped, or one that fits nowhere,
// reads nothing; so does every model without a memory probe. One runs at
// a time per model: while one runs, Prefetch returns its stop.
func (s *Swapper) Prefetch(model string) (stop func()) {
	s.mu.Lock()
	defer s.unlock()
	b, ok := s.backends[model]
	if !ok || s.closed || b.state != Stopped || b.model.NoReadAhead {
		return func() {}
	}
	if p := b.prefetch; p != nil && p.ctx.Err() == nil {
		return p.stop
	}
	in, _ := s.planInputLocked(b, Policy{})
	pl, err := choosePlan(in)
	if err != nil {
		return func() {}
	}
	budget := prefetchBudget(in, pl.victims)
	if budget <= 0 {
		return func() {}
	}
	p := &prefetch{}
	p.ctx, p.cancel = context.WithCancelCause(s.ctx)
	b.prefetch = p
	m := b.model // a reload may replace a stopped backend's model
	prev, done := b.chainAheadLocked()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.readFiles(p.ctx, b, m, budget, true, prev, done)
		p.cancel(nil)
		s.mu.Lock()
		if b.prefetch == p {
			b.prefetch = nil
		}
		s.unlock()
	}()
	return p.stop
}

// stopPrefetchLocked ends b's prefetch, if one runs, because its start
// has been decided.
func (s *Swapper) stopPrefetchLocked(b *backend) {
	if p := b.prefetch; p != nil {
		p.cancel(errStartDecided)
		b.prefetch = nil
	}
}

// chainAheadLocked makes a new read-ahead of b's the last: it waits for
// prev, the one before, to end before it reads, and closes done once it
// has ended. So two never read b's files at once, and their progress
// (b.ahead) is written in the order they ran. prev has always been told
// to stop when the next begins (a prefetch when a start or a newer
// prefetch begins, a start's when its start ends), so the wait is at
// most one chunk's read.
func (b *backend) chainAheadLocked() (prev <-chan struct{}, done chan struct{}) {
	prev, done = b.aheadDone, make(chan struct{})
	b.aheadDone = done
	return prev, done
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
	// A wake reads no files: what it needs is in its process already.
	if len(dec.victims) == 0 || dec.aheadBudget <= 0 || dec.wake || b.model.NoReadAhead {
		return func() {}
	}
	ctx, cancel := context.WithCancel(dec.ctx)
	s.mu.Lock()
	m := b.model
	prev, done := b.chainAheadLocked()
	s.unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.readFiles(ctx, b, m, dec.aheadBudget, false, prev, done)
	}()
	return cancel
}

// readFiles is a read-ahead of m's weight files for b, within budget,
// until ctx ends, once prev has ended; it closes done when it has ended.
// It is said in b.ahead (/admin/models), the log and ReadAhead events;
// queued says it is a prefetch, for requests queued for a stopped model,
// rather than a decided start's.
func (s *Swapper) readFiles(ctx context.Context, b *backend, m *config.Model, budget int64, queued bool,
	prev <-chan struct{}, done chan struct{}) {
	defer close(done)
	if prev != nil {
		<-prev
	}
	files := readahead.Find(m.Cmd, m.Files)
	if len(files) == 0 || ctx.Err() != nil {
		return
	}
	begin := time.Now()
	first := true
	p := readahead.Read(ctx, files, budget, func(p readahead.Progress) {
		s.mu.Lock()
		b.ahead = ReadAhead{Bytes: p.Bytes, Total: p.Total, Done: p.Done, Queued: queued}
		s.unlock()
		if first && !p.Done {
			first = false
			s.log.Info("reading ahead", zap.String("model", m.ID), zap.Strings("files", files),
				zap.String("bytes", config.FormatSize(p.Total)), zap.String("budget", config.FormatSize(budget)),
				zap.Bool("queued", queued))
			s.opts.Events.Publish(events.Event{Type: events.ReadAhead, Model: m.ID, Data: map[string]any{
				"files": files, "bytes": int64(0), "total": p.Total, "budget": budget, "done": false,
				"queued": queued}})
		}
	})
	took := time.Since(begin)
	s.mu.Lock()
	b.ahead = ReadAhead{Bytes: p.Bytes, Total: p.Total, Done: true, Queued: queued}
	s.unlock()
	if p.Err != nil && ctx.Err() != nil {
		// Stopped on purpose: say why (a prefetch's start decided, its
		// requests gone), not just that it was cancelled.
		p.Err = context.Cause(ctx)
		if s.ctx.Err() != nil {
			p.Err = ErrClosed
		}
	}
	fields := []zap.Field{zap.String("model", m.ID), zap.Strings("files", files),
		zap.String("read", config.FormatSize(p.Bytes)), zap.String("of", config.FormatSize(p.Total)),
		zap.Duration("took", took), zap.Bool("queued", queued)}
	if p.Err != nil {
		fields = append(fields, zap.NamedError("stopped", p.Err))
	}
	s.log.Info("read ahead", fields...)
	data := map[string]any{"files": files, "bytes": p.Bytes, "total": p.Total, "budget": budget,
		"seconds": took.Seconds(), "done": true, "complete": p.Bytes == p.Total, "queued": queued}
	if p.Err != nil {
		data["error"] = p.Err.Error()
	}
	s.opts.Events.Publish(events.Event{Type: events.ReadAhead, Model: m.ID, Data: data})
}
