package main

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// pageSize is the step at which the -hold memory is touched: writing one
// byte per page is what makes the kernel back it, so that RSS shows it.
const pageSize = 4096

// load plays the part of loading a model: it takes the -hold memory while
// -startup passes, printing progress, and then becomes ready, fails or
// hangs as told. It returns when ready, when failed, or when ctx ends
// (tests end it; the command never does).
func (m *mock) load(ctx context.Context, addr string) {
	start := time.Now()
	// Loading ends when both the time and the memory are done: touching
	// memory can be slow (seconds per GiB in some VMs), and real backends
	// are not ready before their weights are in.
	held := make(chan struct{})
	var weightsErr error
	go func() {
		m.hold(ctx)
		weightsErr = m.readWeights(ctx)
		close(held)
	}()

	if m.opts.hang {
		<-ctx.Done() // a silent hung load: no output, never ready
		<-held
		return
	}
	ok := m.wait(ctx, start, held)
	<-held
	if !ok {
		return
	}
	if weightsErr != nil && ctx.Err() == nil {
		// A backend whose weights cannot be read fails to start.
		fmt.Fprintln(m.stderr, "error:", weightsErr)
		m.exit(1)
		return
	}
	if m.opts.failStart {
		m.failLoad()
		return
	}
	m.readyAt.Store(time.Now().UnixNano())
	m.ready.Store(true)
	if !m.opts.quiet {
		fmt.Fprintf(m.stdout, "model %s ready on %s\n", m.opts.model, addr)
	}
}

// hold allocates -hold bytes and writes to every page, recording progress
// in m.touched. It gives up early if ctx ends.
func (m *mock) hold(ctx context.Context) {
	b := ballast(m.opts.hold)
	for i := 0; i < len(b); i += pageSize {
		b[i] = 1 // non-zero, so that no zero-page trick can skip it
		if i%(1<<20) == 0 {
			m.touched.Store(int64(i))
			if ctx.Err() != nil {
				return
			}
		}
	}
	m.touched.Store(m.opts.hold)
	m.ballast = b
}

// wait returns once -startup has passed since start and held is closed,
// printing a progress line every -progress-interval meanwhile, as real
// backends do (hotswap logs such lines and takes them as signs of life).
// It reports false if ctx ended first.
func (m *mock) wait(ctx context.Context, start time.Time, held <-chan struct{}) bool {
	timer := time.NewTimer(time.Until(start.Add(m.opts.startup)))
	defer timer.Stop()
	var tick <-chan time.Time
	if m.opts.progressInterval > 0 && (m.opts.startup > 0 || m.opts.hold > 0) && !m.opts.quiet {
		t := time.NewTicker(m.opts.progressInterval)
		defer t.Stop()
		tick = t.C
		m.printProgress(start)
	}
	timeUp := timer.C
	for timeUp != nil || held != nil {
		select {
		case <-timeUp:
			timeUp = nil
		case <-held:
			held = nil
		case <-tick:
			m.printProgress(start)
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// printProgress prints how far loading is: the lesser of the time and the
// memory done, kept below 100% because the "ready" line says that.
func (m *mock) printProgress(start time.Time) {
	pct := 100
	if m.opts.startup > 0 {
		pct = min(pct, int(100*time.Since(start)/m.opts.startup))
	}
	if m.opts.hold > 0 {
		pct = min(pct, int(100*m.touched.Load()/m.opts.hold))
	}
	fmt.Fprintf(m.stdout, "loading model %s: %d%%\n", m.opts.model, min(pct, 99))
}

// failLoad ends a load that fails: with -fail-message as the last line and
// -fail-status, or, with -fail-kill, silently by SIGKILL, as a backend
// the kernel's out-of-memory killer picks dies.
func (m *mock) failLoad() {
	if m.opts.failKill {
		m.kill()
		return
	}
	fmt.Fprintln(m.stderr, m.opts.failMessage)
	m.exit(m.opts.failStatus)
}

// ballast returns n bytes outside Go's heap where the system allows, so
// that the garbage collector does not count them: a heap holding 256 MiB
// of ballast may grow to twice that before it collects, and the mock's
// resident memory would then be whatever the traffic made of it rather
// than -hold (a real backend's weights are not garbage-collected either).
func ballast(n int64) []byte {
	if b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE); err == nil {
		return b
	}
	return make([]byte, n)
}
