package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// A real backend reads its weights from disk as it loads: from the page
// cache in a moment, from the disk in seconds per GiB. -weights FILE makes
// the mock do that: it reads FILE, whole, as it loads (beside -startup and
// -hold: loading ends when all three are done), and /mock/stats says how
// long the read took. -weights-cold drops FILE from the page cache when
// the mock exits, as on a machine whose page cache cannot hold every model
// it swaps between: the next start of this model reads it from the disk,
// unless something (hotswap's read-ahead) read it back first.

// readWeights reads -weights through, and records how long it took.
func (m *mock) readWeights(ctx context.Context) error {
	if m.opts.weights == "" {
		return nil
	}
	begin := time.Now()
	f, err := os.Open(m.opts.weights)
	if err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("weights: %w", err)
		}
	}
	m.weightsRead.Store(int64(time.Since(begin)))
	m.weightsBytes.Store(n)
	return nil
}

// dropWeights drops -weights from the page cache (-weights-cold).
func (m *mock) dropWeights() {
	if m.opts.weights == "" || !m.opts.weightsCold {
		return
	}
	f, err := os.Open(m.opts.weights)
	if err != nil {
		return
	}
	defer f.Close()
	dropFromCache(f)
}
