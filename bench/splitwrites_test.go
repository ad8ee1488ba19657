package bench

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hotswap/hotswap/probe"
)

// splitConfig has backends that write each answer's headers and body in
// two writes without TCP_NODELAY, as Python's http.server and Flask's
// development server do (the mock's -split-writes, and a real
// http.server backend where python3 exists), and the same mock without
// that habit. The quiet ones load for 200ms and say nothing; any two of
// them do not fit together.
const splitConfig = `
ports: 28000-28099
scheduling: {policy: batch, max_wait: 2s, idle_grace: 0s}
models:
  split:
    cmd: MOCK -port ${PORT} -model split -split-writes -progress-interval 0
  plain:
    cmd: MOCK -port ${PORT} -model plain -progress-interval 0
  split-quiet-a:
    cmd: MOCK -port ${PORT} -model split-quiet-a -split-writes -startup 200ms -quiet
    memory: {ram: 6GiB}
  split-quiet-b:
    cmd: MOCK -port ${PORT} -model split-quiet-b -split-writes -startup 200ms -quiet
    memory: {ram: 6GiB}
  plain-quiet-a:
    cmd: MOCK -port ${PORT} -model plain-quiet-a -startup 200ms -quiet
    memory: {ram: 6GiB}
  plain-quiet-b:
    cmd: MOCK -port ${PORT} -model plain-quiet-b -startup 200ms -quiet
    memory: {ram: 6GiB}
`

// startSplit serves splitConfig, with the Python backend as model
// "python" when python3 is found.
func startSplit(b *testing.B) (hs *hotswap, python bool) {
	b.Helper()
	text := splitConfig
	if py, err := exec.LookPath("python3"); err == nil {
		script, err := filepath.Abs("../cmd/mockbackend/testdata/split_server.py")
		if err != nil {
			b.Fatal(err)
		}
		text += "  python:\n    cmd: " + py + " " + script + " ${PORT}\n"
		python = true
	}
	mem := probe.NewFake(mockExe, 10<<30)
	for _, m := range []string{"split-quiet-a", "split-quiet-b", "plain-quiet-a", "plain-quiet-b"} {
		mem.Script(m, probe.Usage{RAM: 6 << 30})
	}
	return serve(b, text, mem, false), python
}

// BenchmarkSplitWrites is a request to a backend that writes headers and
// body in two writes without TCP_NODELAY, sent three ways: directly on a
// fresh connection each time (the baseline the goal is set against),
// directly on a kept-alive connection (where the client's delayed ACK
// holds the body back, about 40ms), and through hotswap, which keeps its
// connections to the backend alive. "plain" is the mock without the
// habit, "python" a real http.server backend (where python3 exists).
//
// Each way sends its requests back to back, as a busy client does: a
// connection idle for more than the ACK delay (about 40ms) between two
// requests leaves Linux's delayed-ACK mode and does not stall, so the
// three ways are not interleaved. One operation is one request each way
// (a chat, max_tokens 1); ms-fresh, ms-kept and ms-proxied are each way's
// median, µs-added the proxied median less the fresh one.
func BenchmarkSplitWrites(b *testing.B) {
	hs, python := startSplit(b)
	models := []string{"split", "plain"}
	if python {
		models = append(models, "python")
	}
	for _, model := range models {
		b.Run(model, func(b *testing.B) {
			warm(b, hs.url, model)
			st, _ := hs.sw.Status(model)
			ways := []struct {
				base string
				c    *http.Client
				took []time.Duration
			}{
				{base: st.Upstream, c: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}},
				{base: st.Upstream, c: &http.Client{Transport: &http.Transport{}}},
				{base: hs.url, c: &http.Client{Transport: &http.Transport{}}},
			}
			body := []byte(`{"model":"` + model + `","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`)
			send := func(base string, c *http.Client) time.Duration {
				began := time.Now()
				resp, err := c.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("%s: %d %v", base, resp.StatusCode, err)
				}
				return time.Since(began)
			}
			for _, w := range ways {
				send(w.base, w.c) // the kept connections are open before the timing
			}
			b.ResetTimer()
			for i := range ways {
				for range b.N {
					ways[i].took = append(ways[i].took, send(ways[i].base, ways[i].c))
				}
			}
			b.StopTimer()
			for _, w := range ways {
				w.c.CloseIdleConnections()
			}
			fresh, kept, proxied := medianOf(ways[0].took), medianOf(ways[1].took), medianOf(ways[2].took)
			b.ReportMetric(ms(fresh), "ms-fresh")
			b.ReportMetric(ms(kept), "ms-kept")
			b.ReportMetric(ms(proxied), "ms-proxied")
			b.ReportMetric(float64((proxied-fresh).Nanoseconds())/1000, "µs-added")
		})
	}
}

// BenchmarkSplitWritesReadinessLag is BenchmarkReadinessLag against
// backends that write their health answers' headers and body in two
// writes without TCP_NODELAY ("split"), and against the same mock without
// that habit ("plain"): how long after a quiet backend turns ready
// hotswap sees it. One operation is one cold start (the two models in
// turn, each stopping the other); ms-median and ms-max are the lags'
// median and largest.
func BenchmarkSplitWritesReadinessLag(b *testing.B) {
	hs, _ := startSplit(b)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, kind := range []string{"split", "plain"} {
		b.Run(kind, func(b *testing.B) {
			coldStartLags(b, hs, c, kind+"-quiet-a", kind+"-quiet-b")
		})
	}
}

// medianOf returns the median of ds (which it sorts).
func medianOf(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
