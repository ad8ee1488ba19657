package readahead

import (
	"context"
	"path/filepath"
	"testing"
)

func TestReadAll(t *testing.T) {
	dir := t.TempDir()
	a := touch(t, filepath.Join(dir, "a.gguf"), 3*Chunk+17)
	b := touch(t, filepath.Join(dir, "b.gguf"), 5)
	var reports []Progress
	p := Read(context.Background(), []string{a, b, filepath.Join(dir, "gone.gguf")}, 1<<40, func(p Progress) { reports = append(reports, p) })
	if p.Bytes != 3*Chunk+22 || p.Total != p.Bytes || p.Files != 2 || !p.Done {
		t.Errorf("Read = %+v, want every byte of 2 files", p)
	}
	if p.Err == nil {
		t.Error("a file that is gone gave no error")
	}
	if len(reports) == 0 || reports[len(reports)-1] != p {
		t.Errorf("last report %+v, want %+v", reports, p)
	}
}

func TestReadBudget(t *testing.T) {
	dir := t.TempDir()
	a := touch(t, filepath.Join(dir, "a.gguf"), 2*Chunk)
	b := touch(t, filepath.Join(dir, "b.gguf"), 2*Chunk)
	for _, budget := range []int64{0, -1, 100, Chunk + 5, 3 * Chunk, 10 * Chunk} {
		p := Read(context.Background(), []string{a, b}, budget, nil)
		want := max(0, min(budget, 4*Chunk))
		if p.Bytes != want || p.Total != want || p.Err != nil {
			t.Errorf("budget %d: %+v, want %d bytes", budget, p, want)
		}
	}
}

func TestReadCancel(t *testing.T) {
	dir := t.TempDir()
	a := touch(t, filepath.Join(dir, "a.gguf"), 8*Chunk)
	ctx, cancel := context.WithCancel(context.Background())
	p := Read(ctx, []string{a}, 1<<40, func(Progress) {})
	if p.Bytes != 8*Chunk {
		t.Fatalf("uncancelled read %+v", p)
	}
	cancel()
	if p := Read(ctx, []string{a}, 1<<40, nil); p.Bytes != 0 || p.Err != context.Canceled || !p.Done {
		t.Errorf("cancelled before: %+v, want nothing read and context.Canceled", p)
	}
	// Called off midway: the reads stop at the next chunk.
	stopAt := int64(3 * Chunk)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var n int64
	p = Read(ctx, []string{a, a}, 1<<40, nil) // warm, so the reads below are quick
	got, err := readFile(ctx, a, 8*Chunk, make([]byte, Chunk), func(k int64) {
		n += k
		if n >= stopAt {
			cancel()
		}
	})
	if err != context.Canceled || got != stopAt || n != stopAt {
		t.Errorf("called off at %d bytes: read %d (%d told), err %v", stopAt, got, n, err)
	}
}
