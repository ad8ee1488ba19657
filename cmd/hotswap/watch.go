package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/clock"
)

// configWatch notices when the configuration file's content changes, for
// -watch. It decides only that a reload is due: the reload itself is the
// one SIGHUP makes (serve's reload loop, control's validated Reload), so
// a broken save is refused there and the configuration in use stays.
//
// It polls rather than subscribing to file-system events: a stat per
// interval costs nothing, needs no dependency, and sees the same thing
// however the file was saved (written in place, renamed over, or a
// symlink whose target moved, as a Kubernetes ConfigMap does), where
// inotify and its kin watch an inode that an atomic save replaces.
type configWatch struct {
	path     string
	interval time.Duration
	clock    clock.Clock

	// seen is the file as last read; applied is the content that the
	// configuration in use came from, or the last one a reload was asked
	// for: a refused file is not asked for again until it changes.
	seen    snapshot
	applied [sha256.Size]byte
	// pending: seen differs from applied, and is reloaded once it has
	// held still for an interval, so that a save written in pieces (or
	// truncated, then written) is one reload of the finished file.
	pending bool
	// problem is the last error reported, so that a file missing for a
	// while (between an editor's delete and its write) is one warning.
	problem string
}

// snapshot is one reading of the file.
type snapshot struct {
	info   os.FileInfo // nil: never read
	readAt time.Time
	sum    [sha256.Size]byte
}

// mtimeSlack is the coarsest modification time in common use (FAT's two
// seconds). A file modified this close to when it was read may change
// again within the same timestamp, so it is read again rather than
// trusted to its stat (git's "racily clean" rule).
const mtimeSlack = 2 * time.Second

// newConfigWatch reads the file as it is now. Call it before the
// configuration is loaded from path: a save between the two is then a
// change the first poll sees, where reading after the load could take a
// newer file for the one in use.
func newConfigWatch(path string, interval time.Duration, clk clock.Clock) *configWatch {
	w := &configWatch{path: path, interval: interval, clock: clk}
	if s, err := readSnapshot(path, clk.Now()); err == nil {
		w.seen, w.applied = s, s.sum
	}
	// Otherwise the first reading differs from the zero sum: one reload,
	// which changes nothing if the loaded file was that one.
	return w
}

// run polls every interval until ctx is done, calling reload (which must
// not block) each time the file's content changed and held still.
func (w *configWatch) run(ctx context.Context, log *zap.Logger, reload func()) {
	t := w.clock.NewTimer(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if w.poll(log) {
			reload()
		}
		t.Reset(w.interval)
	}
}

// poll looks at the file once and reports whether it is time to reload.
func (w *configWatch) poll(log *zap.Logger) bool {
	cur, err := w.observe()
	if err != nil {
		// No reload: the configuration in use stays until a file is
		// there to read. Never the contents in a log line: the file may
		// hold keys.
		if msg := err.Error(); msg != w.problem {
			w.problem = msg
			if errors.Is(err, fs.ErrNotExist) {
				log.Warn("the configuration file is missing; the configuration in use stays, and the file is watched for its return",
					zap.String("path", w.path))
			} else {
				log.Warn("cannot read the configuration file; the configuration in use stays", zap.String("path", w.path), zap.Error(err))
			}
		}
		return false
	}
	if w.problem != "" {
		w.problem = ""
		log.Info("the configuration file can be read again", zap.String("path", w.path))
	}
	if cur.sum != w.seen.sum {
		// Changed since the last poll: wait for it to hold still. Back
		// to the content in use is no change at all.
		w.seen = cur
		w.pending = cur.sum != w.applied
		return false
	}
	w.seen = cur
	if !w.pending {
		return false
	}
	w.pending = false
	w.applied = cur.sum
	return true
}

// observe returns the file's content as a snapshot, reading it only when
// its stat says it may have changed: another file (renamed over, or a
// symlink's new target), another size or modification time, or a last
// reading too close to its modification time to trust (mtimeSlack). A
// touch is read again, and found the same.
func (w *configWatch) observe() (snapshot, error) {
	now := w.clock.Now()
	info, err := os.Stat(w.path) // follows symlinks: the target's content is what a reload reads
	if err != nil {
		return snapshot{}, err
	}
	if prev := w.seen.info; prev != nil && os.SameFile(prev, info) && prev.Size() == info.Size() &&
		prev.ModTime().Equal(info.ModTime()) && prev.ModTime().Before(w.seen.readAt.Add(-mtimeSlack)) {
		return w.seen, nil
	}
	return readSnapshot(w.path, now)
}

// readSnapshot reads path's content at now.
func readSnapshot(path string, now time.Time) (snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return snapshot{}, err
	}
	defer f.Close()
	// The stat is taken before the read: a write during the read moves
	// the modification time past it, and the next poll reads again.
	info, err := f.Stat()
	if err != nil {
		return snapshot{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return snapshot{}, err
	}
	s := snapshot{info: info, readAt: now}
	h.Sum(s.sum[:0])
	return s, nil
}
