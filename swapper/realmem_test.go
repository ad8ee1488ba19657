package swapper_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/swapper"
)

// rss reads a process's resident set from /proc, independently of the
// probe under test.
func rss(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// sampleMocks watches every mock process every few milliseconds until the
// returned function is called, which reports the most that ran at once and
// the most resident memory they held together.
func sampleMocks() func() (maxLive int, maxRSS int64) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var live int
	var resident int64
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			pids := mocktest.Pids(mockExe)
			var total int64
			for _, p := range pids {
				total += rss(p)
			}
			live, resident = max(live, len(pids)), max(resident, total)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() (int, int64) {
		close(stop)
		<-done
		return live, resident
	}
}

// TestLimitRAMWithRealMemory runs mocks that each hold ~300MiB for real,
// under a limit_ram that fits two, with the real probe. Requests for all
// three come in concurrently and repeatedly; a sampler watches every mock
// process's RSS the whole time.
func TestLimitRAMWithRealMemory(t *testing.T) {
	mem := probe.NewMemory(nil)
	sw, _ := memSwapper(t, `
models:
  a: {cmd: "MOCK -port ${PORT} -hold 300MiB -progress-interval 0", memory: {ram: 300MiB}}
  b: {cmd: "MOCK -port ${PORT} -hold 300MiB -progress-interval 0", memory: {ram: 300MiB}}
  c: {cmd: "MOCK -port ${PORT} -hold 300MiB -progress-interval 0", memory: {ram: 300MiB}}
`, mem, func(o *swapper.Options) { o.LimitRAM = 700 << 20 })

	sampling := sampleMocks()
	var wg sync.WaitGroup
	for round := range 3 {
		for _, m := range []string{"a", "b", "c"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				l, err := sw.Acquire(ctx, m)
				if err != nil {
					t.Errorf("round %d, %s: %v", round, m, err)
					return
				}
				l.Release()
			}()
		}
		wg.Wait()
	}
	maxLive, maxRSS := sampling()
	t.Logf("at most %d mocks at once, %d MiB resident together", maxLive, maxRSS>>20)
	if maxLive > 2 {
		t.Errorf("%d mocks ran at once under a limit that fits two", maxLive)
	}
	if maxRSS > 700<<20 {
		t.Errorf("mocks held %d MiB together, over the 700MiB limit", maxRSS>>20)
	}
	if maxLive < 2 {
		t.Errorf("never two at once: the limit fits two")
	}
}
