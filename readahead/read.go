package readahead

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"time"
)

// Chunk is the size of each read: small enough that a call-off is heard at
// once, large enough that the disk streams.
const Chunk = 1 << 20

// Progress is how far a read-ahead got.
type Progress struct {
	Files int   // files read, in full or in part
	Bytes int64 // bytes read
	Total int64 // bytes it set out to read: the files' size, within the budget
	Done  bool  // set on the last report only
	// Err is why it ended early: the context's error, or the first file
	// that could not be read (the others are still read).
	Err error
}

// Read reads files into the page cache, in order, and returns how far it
// got. It never reads more than budget bytes (a file that does not fit is
// read up to it: its head, which a loader wants first); a budget of 0 or
// less reads nothing. It ends early when ctx does. report, if not nil, is
// called from Read's own goroutine: once before the first read (Total
// known), about every second as it reads, and once more with Done.
//
// Each file is first hinted with POSIX_FADV_WILLNEED, which lets the
// kernel start reading it asynchronously, then read sequentially in
// Chunk-sized reads. The hint alone is not enough: the kernel may cap or
// drop it under memory pressure and says nothing of its progress, while a
// read that returned guarantees the pages were in the cache (they can
// still be reclaimed later, as any cache can), and counts bytes for the
// progress and the budget. The reads run on an OS thread of their own set
// to the idle I/O class (ioprio_set IOPRIO_CLASS_IDLE, Linux only), so
// that they take the disk only when nothing else wants it; the I/O
// scheduler must honour classes (bfq does; none and mq-deadline do not,
// and then the reads simply run at normal priority). The thread is thrown
// away afterwards, its priority with it. Off Linux the reads are plain.
func Read(ctx context.Context, files []string, budget int64, report func(Progress)) Progress {
	done := make(chan Progress, 1)
	go func() {
		// Locked and never unlocked: the thread ends with the goroutine,
		// so that no other goroutine inherits its idle priority.
		runtime.LockOSThread()
		idlePriority()
		done <- read(ctx, files, budget, report)
	}()
	return <-done
}

func read(ctx context.Context, files []string, budget int64, report func(Progress)) Progress {
	var p Progress
	sizes := make([]int64, len(files))
	for i, f := range files {
		if fi, err := os.Stat(f); err == nil {
			sizes[i] = fi.Size()
		}
		p.Total += sizes[i]
	}
	p.Total = max(0, min(p.Total, budget))
	say := func() {
		if report != nil {
			report(p)
		}
	}
	say()
	buf := make([]byte, Chunk)
	last := time.Now()
	for i, name := range files {
		left := budget - p.Bytes
		if left <= 0 || ctx.Err() != nil {
			break
		}
		n, err := readFile(ctx, name, min(left, sizes[i]), buf, func(n int64) {
			p.Bytes += n
			if time.Since(last) >= time.Second {
				last = time.Now()
				say()
			}
		})
		if n > 0 {
			p.Files++
		}
		if err != nil && p.Err == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			p.Err = err
		}
	}
	if err := ctx.Err(); err != nil {
		p.Err = err
	}
	p.Done = true
	say()
	return p
}

// readFile reads up to limit bytes of name, telling add of each read.
func readFile(ctx context.Context, name string, limit int64, buf []byte, add func(int64)) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	willNeed(f, limit)
	var total int64
	for total < limit {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		b := buf[:min(int64(len(buf)), limit-total)]
		n, err := f.Read(b)
		total += int64(n)
		add(int64(n))
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
