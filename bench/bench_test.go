package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/bench/internal/hotswaptest"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

var mockExe string

func TestMain(m *testing.M) { os.Exit(mocktest.Main(m, &mockExe)) }

const benchConfig = `
ports: 23000-23999
server: {max_conns: 1000, max_conns_per_ip: 500}
models:
  a:
    cmd: MOCK -port ${PORT} -model a -progress-interval 0
    parallel: 64
    memory: {ram: 6GiB}
  b:
    cmd: MOCK -port ${PORT} -model b -progress-interval 0
    parallel: 64
    memory: {ram: 6GiB}
  loads-500ms:
    cmd: MOCK -port ${PORT} -model loads-500ms -startup 500ms -progress-interval 0
    memory: {ram: 6GiB}
  closes-after-stream:
    cmd: MOCK -port ${PORT} -model closes-after-stream -close-after-stream -stream-interval 0 -tokens 4 -progress-interval 0
    parallel: 4
  instep-a:
    cmd: MOCK -port ${PORT} -model instep-a -latency 10ms -progress-interval 0
    parallel: 4
    memory: {ram: 6GiB}
  instep-b:
    cmd: MOCK -port ${PORT} -model instep-b -latency 10ms -progress-interval 0
    parallel: 4
    memory: {ram: 6GiB}
  quiet-a:
    cmd: MOCK -port ${PORT} -model quiet-a -startup 200ms -quiet
    memory: {ram: 6GiB}
  quiet-b:
    cmd: MOCK -port ${PORT} -model quiet-b -startup 200ms -quiet
    memory: {ram: 6GiB}
  two-slots-a:
    cmd: MOCK -port ${PORT} -model two-slots-a -latency 20ms -progress-interval 0
    parallel: 2
    memory: {ram: 6GiB}
  two-slots-b:
    cmd: MOCK -port ${PORT} -model two-slots-b -latency 20ms -progress-interval 0
    parallel: 2
    memory: {ram: 6GiB}
`

type hotswap struct {
	url    string
	sw     *swapper.Swapper
	rt     *router.Router
	starts *mocktest.Starter
	// stop shuts this hotswap and its backends down; it runs at the
	// benchmark's cleanup, or earlier for a benchmark that needs a fresh
	// hotswap each iteration. Only the first call does anything.
	stop func()
}

// ownWork is the scheduling of the benchmarks that measure hotswap's own
// work: batch, no idle grace.
const ownWork = "policy: batch, max_wait: 2s, idle_grace: 0s"

// start serves benchConfig with batch and no idle grace: the benchmarks
// that use it measure hotswap's own work, not a policy's waits.
func start(b *testing.B) *hotswap {
	return startWith(b, ownWork, false)
}

// startWith serves benchConfig with the scheduling settings given (YAML
// flow mapping, without braces), with the metrics and the event hub wired
// in as main does when withMetrics is set.
func startWith(b testing.TB, sched string, withMetrics bool) *hotswap {
	b.Helper()
	// Scripted memory: any two of the models do not fit together, so each
	// switch stops one backend and starts another.
	mem := probe.NewFake(mockExe, 10<<30)
	for _, m := range []string{"a", "b", "loads-500ms", "two-slots-a", "two-slots-b", "instep-a", "instep-b", "quiet-a", "quiet-b"} {
		mem.Script(m, probe.Usage{RAM: 6 << 30})
	}
	return serve(b, benchConfig+"scheduling: {"+sched+"}\n", mem, withMetrics)
}

// serve runs hotswap in this process on text (a configuration in which
// MOCK is the mock backend) and memory.
func serve(b testing.TB, text string, mem probe.Memory, withMetrics bool) *hotswap {
	b.Helper()
	hs := hotswaptest.Serve(b, strings.ReplaceAll(text, "MOCK", mockExe), mem, withMetrics)
	return &hotswap{url: hs.URL, sw: hs.Swapper, rt: hs.Router, starts: hs.Starts, stop: hs.Stop}
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// chat sends one chat request and reports whether it was answered with a
// 200. It is called from the clients' goroutines too, so a failure is
// recorded (b.Error), never fatal: the caller stops (returns) on false.
func chat(b *testing.B, base, model string) bool {
	body := `{"model":"` + model + `","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := client.Post(base+"/v1/chat/completions", "application/json", bytes.NewBufferString(body))
	if err != nil {
		b.Error(err)
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Errorf("status %d", resp.StatusCode)
		return false
	}
	return true
}

// warm sends one chat request from the benchmark's own goroutine, during
// setup, and stops the benchmark if it fails.
func warm(b *testing.B, base, model string) {
	b.Helper()
	if !chat(b, base, model) {
		b.FailNow()
	}
}

// BenchmarkWarmDirect is the baseline: the mock backend without hotswap.
// One operation is one request.
func BenchmarkWarmDirect(b *testing.B) {
	hs := start(b)
	warm(b, hs.url, "a")
	st, _ := hs.sw.Status("a")
	benchParallel(b, st.Upstream, "a")
}

// BenchmarkWarmProxied is the same traffic through hotswap.
func BenchmarkWarmProxied(b *testing.B) {
	hs := start(b)
	warm(b, hs.url, "a")
	benchParallel(b, hs.url, "a")
}

// BenchmarkWarmProxiedMetrics is BenchmarkWarmProxied with the metrics on,
// as hotswap runs: what counting each request costs.
func BenchmarkWarmProxiedMetrics(b *testing.B) {
	hs := startWith(b, ownWork, true)
	warm(b, hs.url, "a")
	benchParallel(b, hs.url, "a")
}

// benchParallel sends b.N requests from 8 clients at once. ns/op is the
// wall time over the requests (8 in flight), as µs/req is; allocs/op
// counts the whole process's allocations per request: the client's, and
// hotswap's when it is in the path.
func benchParallel(b *testing.B, base, model string) {
	b.ReportAllocs()
	n := b.N
	b.ResetTimer()
	el := together(8, func(c int) {
		for i := c; i < n; i += 8 {
			if !chat(b, base, model) {
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(el.Microseconds())/float64(n), "µs/req")
	b.ReportMetric(float64(n)/el.Seconds(), "req/s")
}

// BenchmarkSwitch measures a request for a model that is not running while
// another is: stopping that one, starting this one (process start and
// readiness polling) and the request. The mock starts in a few
// milliseconds, so this is hotswap's own overhead on a swap. One operation
// is one switch: requests alternate between a and b, each stopping the
// other.
func BenchmarkSwitch(b *testing.B) {
	hs := start(b)
	warm(b, hs.url, "b") // b runs, so the first request (for a) switches
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		model, other := "a", "b"
		if i%2 == 1 {
			model, other = other, model
		}
		begin := time.Now()
		if !chat(b, hs.url, model) {
			b.FailNow()
		}
		total += time.Since(begin)
		if st, _ := hs.sw.Status(other); st.State != swapper.Stopped {
			b.Fatalf("%s is %v: no switch happened", other, st.State)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/switch")
}

// BenchmarkColdStartOverhead measures how long after a backend is ready its
// first request is answered: a model that takes 500ms to load is asked for
// while another runs, and the figure is the time beyond those 500ms
// (stopping the other, starting the process, noticing readiness, the
// request itself). One operation is one such cold start; starting the
// other model before each (which stops this one) is not timed.
func BenchmarkColdStartOverhead(b *testing.B) {
	hs := start(b)
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		warm(b, hs.url, "a") // stops loads-500ms: the next start is cold
		b.StartTimer()
		begin := time.Now()
		if !chat(b, hs.url, "loads-500ms") {
			b.FailNow()
		}
		total += time.Since(begin) - 500*time.Millisecond
		if st, _ := hs.sw.Status("a"); st.State != swapper.Stopped {
			b.Fatalf("a is %v: the start was not cold", st.State)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-over-load")
}

// BenchmarkRealProbe measures one planning look at the machine with the
// real probe: free memory of every device, and one backend's process-tree
// usage (this process's). One operation is one look.
func BenchmarkRealProbe(b *testing.B) {
	mem := probe.NewMemory(nil)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := mem.Devices(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := mem.Usage(ctx, os.Getpid()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcquireRelease is the router's fast path on its own: a request
// for a loaded model with a free slot, queued, dispatched by the loop,
// handed its lease, released. The swapper's own Acquire and Release are the
// baseline it adds to. One operation is one acquire and release; b.N of
// them are spread over 8 goroutines, so ns/op (and ns/acquire, the same
// figure) is wall time over operations with 8 in flight.
func BenchmarkAcquireRelease(b *testing.B) {
	hs := start(b)
	warm(b, hs.url, "a")
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		acquire func() (interface{ Release() }, error)
	}{
		{"swapper", func() (interface{ Release() }, error) {
			// The swapper's own lease, as the router takes it.
			l := new(swapper.Lease)
			if !hs.sw.TryLease("a", l) {
				return nil, swapper.ErrClosed
			}
			return l, nil
		}},
		{"router", func() (interface{ Release() }, error) { return hs.rt.Acquire(ctx, "a") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			n := b.N
			b.ResetTimer()
			el := together(8, func(w int) {
				for i := w; i < n; i += 8 {
					l, err := c.acquire()
					if err != nil {
						b.Error(err)
						return
					}
					l.Release()
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(el.Nanoseconds())/float64(n), "ns/acquire")
		})
	}
}

// BenchmarkInterleaved is the workload that makes simple proxies thrash:
// 60 requests alternating between two models that do not fit together,
// one sent every 5 ms whether or not earlier ones have been answered; each
// model answers in 20 ms with two slots. It reports the swaps (backend
// starts) and the longest wait for an answer under each policy.
//
// One operation is one whole run of the workload, against a fresh hotswap
// with nothing loaded (started and stopped untimed around each run). swaps
// and ms-total are the averages over the b.N runs; ms-longest is the
// longest answer in any of them (the max).
func BenchmarkInterleaved(b *testing.B) {
	for _, policy := range []string{config.PolicyFIFO, config.PolicyBatch} {
		b.Run(policy, func(b *testing.B) {
			const requests = 60
			var swaps int64
			var longest, total time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				hs := startWith(b, "policy: "+policy+", max_wait: 2s", false)
				b.StartTimer()
				var mu sync.Mutex
				tick := time.NewTicker(5 * time.Millisecond)
				begin := time.Now()
				var wg sync.WaitGroup
				for i := range requests {
					if i > 0 {
						<-tick.C
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						t := time.Now()
						chat(b, hs.url, []string{"two-slots-a", "two-slots-b"}[i%2])
						mu.Lock()
						longest = max(longest, time.Since(t))
						mu.Unlock()
					}()
				}
				wg.Wait()
				total += time.Since(begin)
				b.StopTimer()
				tick.Stop()
				swaps += hs.starts.Starts()
				hs.stop()
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(swaps)/float64(b.N), "swaps")
			b.ReportMetric(float64(longest.Milliseconds()), "ms-longest")
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-total")
		})
	}
}

// BenchmarkInStep is clients running in step, the closed loop that made
// batch flap: 8 users, 4 on each of two models that do not fit together,
// each sending its next request as soon as its last is answered (30
// each), with max_wait 3s. Between two rounds a model has nothing in
// flight or queued for a moment; with idle_grace that moment does not
// count as idle. It reports the backend starts and the time it all took,
// under fifo, batch, and batch without the grace.
//
// One operation is one whole run (8 users × 30 requests), against a fresh
// hotswap with nothing loaded (started and stopped untimed around each
// run). starts and ms-total are the averages over the b.N runs.
func BenchmarkInStep(b *testing.B) {
	for _, c := range []struct{ name, sched string }{
		{"fifo", "policy: fifo"},
		{"batch", "policy: batch, max_wait: 3s"},
		{"batch-no-grace", "policy: batch, max_wait: 3s, idle_grace: 0s"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var starts int64
			var total time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				hs := startWith(b, c.sched, false)
				b.StartTimer()
				total += together(8, func(u int) {
					model := []string{"instep-a", "instep-b"}[u%2]
					for range 30 {
						if !chat(b, hs.url, model) {
							return
						}
					}
				})
				b.StopTimer()
				starts += hs.starts.Starts()
				hs.stop()
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(starts)/float64(b.N), "starts")
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-total")
		})
	}
}

// BenchmarkReadinessLag is how long after a backend that prints nothing
// becomes ready hotswap sees it: starts of a backend that loads for 200ms
// and says nothing, each measured from the moment the backend turned ready
// (its own clock) to the moment hotswap marked it ready. One operation is
// one such cold start (a request for quiet-a or quiet-b, alternately, each
// stopping the other); ns/op is the whole request. ms-median and ms-max
// are the median and the largest lag over the b.N starts (with b.N = 1,
// both are that one start's lag).
func BenchmarkReadinessLag(b *testing.B) {
	hs := start(b)
	coldStartLags(b, hs, &http.Client{}, "quiet-a", "quiet-b")
}

// coldStartLags starts models one and other in turn, b.N times (each
// start stopping the other, so every one is cold), and reports the median
// and the largest lag between the backend turning ready (its own clock)
// and hotswap marking it ready, as ms-median and ms-max. c asks the
// backends when they turned ready.
func coldStartLags(b *testing.B, hs *hotswap, c *http.Client, one, other string) {
	lags := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		model := []string{one, other}[i%2]
		if !chat(b, hs.url, model) { // stops the other: every start is cold
			b.FailNow()
		}
		b.StopTimer() // asking the backend when it turned ready is not the start
		st, _ := hs.sw.Status(model)
		resp, err := c.Get(st.Upstream + "/mock/stats")
		if err != nil {
			b.Fatal(err)
		}
		var ms struct {
			ReadyAt int64 `json:"ready_at"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ms)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		lags = append(lags, st.ReadyAt.Sub(time.Unix(0, ms.ReadyAt)))
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "ms-max")
}

// BenchmarkChatAfterStream is llama-server's habit that made proxies answer
// 502: the backend closes the connection after every streamed answer
// without saying so, and a client that reuses it for the next request
// loses that request. Each round is a stream read to its end, then a chat.
// "keepalive-direct" is a client talking to such a backend directly and
// reusing connections (it counts the requests lost); "fresh-direct" opens a
// connection per request (what a client must do to lose none, the
// baseline); "proxied" goes through hotswap, reusing its connection to
// hotswap, and must lose none. One operation is one round; µs/round and
// lost/round (requests lost, of the round's two) are averages over the b.N
// rounds.
func BenchmarkChatAfterStream(b *testing.B) {
	hs := start(b)
	warm(b, hs.url, "closes-after-stream")
	st, _ := hs.sw.Status("closes-after-stream")
	const stream = `{"model":"closes-after-stream","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	const plain = `{"model":"closes-after-stream","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct {
		name string
		base string
		c    *http.Client
	}{
		{"keepalive-direct", st.Upstream, &http.Client{Transport: &http.Transport{}}},
		{"fresh-direct", st.Upstream, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}},
		{"proxied", hs.url, &http.Client{Transport: &http.Transport{}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			post := func(body string) bool {
				resp, err := c.c.Post(c.base+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					return false
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return err == nil && resp.StatusCode == 200
			}
			lost := 0
			b.ResetTimer()
			for range b.N {
				for _, body := range []string{stream, plain} {
					if !post(body) {
						lost++
					}
				}
			}
			b.StopTimer()
			c.c.CloseIdleConnections()
			if c.name == "proxied" && lost > 0 {
				b.Fatalf("hotswap lost %d of %d requests", lost, 2*b.N)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/round")
			b.ReportMetric(float64(lost)/float64(b.N), "lost/round")
		})
	}
}

// BenchmarkConnectionFlood is one client opening 2 000 idle connections
// (from 127.0.0.2) against caps of 1 000 in all and 500 from one address:
// it reports how many were held, refused with an answer (429) and closed
// without one, and how long a chat from another address (127.0.0.1) then
// takes.
//
// One operation is one whole flood: opening the 2 000 connections, reading
// them (half a second) and the other client's chat, against a fresh
// hotswap with a model loaded (started, and stopped with the connections
// closed, untimed around each flood). held, refused, closed and
// µs-other-client are averages over the b.N floods.
func BenchmarkConnectionFlood(b *testing.B) {
	const flood = 2000
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	var held, refused, closed int
	var other time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		hs := start(b)
		warm(b, hs.url, "a")
		conns := make([]net.Conn, 0, flood)
		b.StartTimer()
		for range flood {
			c, err := d.Dial("tcp", strings.TrimPrefix(hs.url, "http://"))
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Each connection is read for half a second, all at once: a refusal
		// comes by then; a held connection has nothing to read.
		var mu sync.Mutex
		together(len(conns), func(i int) {
			buf := make([]byte, 64)
			_ = conns[i].SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := conns[i].Read(buf)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case n > 0 && strings.HasPrefix(string(buf[:n]), "HTTP/1.1 429"):
				refused++
			case err != nil && os.IsTimeout(err):
				held++
			default:
				closed++
			}
		})
		begin := time.Now()
		chat(b, hs.url, "a")
		other += time.Since(begin)
		b.StopTimer()
		for _, c := range conns {
			c.Close()
		}
		hs.stop()
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(held)/n, "held")
	b.ReportMetric(float64(refused)/n, "refused")
	b.ReportMetric(float64(closed)/n, "closed")
	b.ReportMetric(float64(other.Microseconds())/n, "µs-other-client")
}

// together runs f(0) ... f(n-1) at once, each on its own goroutine, and
// returns how long they took. f must not call b.Fatal, b.FailNow or b.Skip
// (they must run on the benchmark's goroutine): it records failures with
// b.Error and returns.
func together(n int, f func(c int)) time.Duration {
	begin := time.Now()
	var wg sync.WaitGroup
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(c)
		}()
	}
	wg.Wait()
	return time.Since(begin)
}
