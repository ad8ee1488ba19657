package bench

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/swapper"
)

// fittingConfig is issue 26's machine: fit-a and fit-b do not fit
// together in the scripted 10GiB, fit-c fits beside either. fit-a's
// stream is the long request (300 chunks 10ms apart: 3s); fit-c takes
// 300ms to load.
const fittingConfig = `
ports: 23000-23999
scheduling: {policy: POLICY, max_wait: 1m}
models:
  fit-a:
    cmd: MOCK -port ${PORT} -model fit-a -tokens 300 -stream-interval 10ms -progress-interval 0
    memory: {ram: 6GiB}
  fit-b:
    cmd: MOCK -port ${PORT} -model fit-b -progress-interval 0
    memory: {ram: 6GiB}
  fit-c:
    cmd: MOCK -port ${PORT} -model fit-c -startup 300ms -progress-interval 0
    memory: {ram: 3GiB}
`

// BenchmarkFittingStart measures issue 26's case: fit-a serves a 3s
// stream; fit-b, asked for next, waits for it (fifo: its swap is decided
// and waits for fit-a's drain; batch: it waits for max_wait or fit-a's
// idleness); then fit-c, which fits beside either, is asked for. One
// operation is one such round. It reports how long fit-c's answer took
// (c-ms), fit-c's own cold start with nothing else going on, measured in
// the same round (load-ms), and the difference (over-load-ms): what the
// wait behind fit-b's swap added to fit-c's own load.
func BenchmarkFittingStart(b *testing.B) {
	for _, policy := range []string{"fifo", "batch"} {
		b.Run(policy, func(b *testing.B) {
			mem := probe.NewFake(mockExe, 10<<30)
			mem.Script("fit-a", probe.Usage{RAM: 6 << 30})
			mem.Script("fit-b", probe.Usage{RAM: 6 << 30})
			mem.Script("fit-c", probe.Usage{RAM: 3 << 30})
			hs := serve(b, strings.ReplaceAll(fittingConfig, "POLICY", policy), mem, true)
			var cMs, loadMs, overMs []float64
			b.ResetTimer()
			for range b.N {
				warm(b, hs.url, "fit-a")
				load := timed(b, hs.url, "fit-c")
				unload(b, hs.url, "fit-c")

				first, ended := longStream(b, hs.url, "fit-a")
				<-first
				forB := make(chan bool, 1)
				go func() { forB <- chat(b, hs.url, "fit-b") }()
				if !mocktest.Eventually(10*time.Second, func() bool {
					if policy == "fifo" {
						return hs.sw.State("fit-a") == swapper.Draining
					}
					return hs.rt.Stats("fit-b").Queued.Load() == 1
				}) {
					b.Fatal("fit-b is not waiting for fit-a")
				}
				took := timed(b, hs.url, "fit-c")
				<-ended
				if !<-forB {
					b.FailNow()
				}
				unload(b, hs.url, "fit-b")
				unload(b, hs.url, "fit-c")

				cMs = append(cMs, millis(took))
				loadMs = append(loadMs, millis(load))
				overMs = append(overMs, millis(took-load))
			}
			b.StopTimer()
			b.ReportMetric(median(cMs), "c-ms")
			b.ReportMetric(median(loadMs), "load-ms")
			b.ReportMetric(median(overMs), "over-load-ms")
		})
	}
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timed sends one chat for model and returns how long its answer took.
func timed(b *testing.B, base, model string) time.Duration {
	b.Helper()
	t0 := time.Now()
	warm(b, base, model)
	return time.Since(t0)
}

// unload stops model through the admin API (it answers once stopped).
func unload(b *testing.B, base, model string) {
	b.Helper()
	resp, err := client.Post(base+"/admin/models/"+model+"/unload", "application/json", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("unload %s: status %d", model, resp.StatusCode)
	}
}

// longStream streams a chat from model, read to its end on a goroutine:
// first is closed at its first chunk, ended when it has ended.
func longStream(b *testing.B, base, model string) (first, ended <-chan struct{}) {
	f, e := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(e)
		opened := false
		defer func() {
			if !opened {
				close(f)
			}
		}()
		body := `{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		resp, err := client.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Error(err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("stream: status %d", resp.StatusCode)
			return
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if !opened && strings.HasPrefix(sc.Text(), "data: ") {
				opened = true
				close(f)
			}
		}
	}()
	return f, e
}
