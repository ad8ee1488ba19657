// Package hotswaptest runs hotswap inside a test's or a benchmark's own
// process, wired as cmd/hotswap wires it, on a configuration and a memory
// probe the caller gives: what hotswap's benchmarks (bench) and the load
// generator's tests (bench/loadgen) run against. With a scripted probe
// (probe.Fake) they decide which models fit together, on a machine of any
// size.
package hotswaptest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/control"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/metrics"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/proxy"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// Hotswap is one hotswap serving on 127.0.0.1.
type Hotswap struct {
	URL     string // http://127.0.0.1:PORT
	Swapper *swapper.Swapper
	Router  *router.Router
	Starts  *mocktest.Starter // counts the backends started
	// Stop shuts this hotswap and its backends down; it runs at the
	// test's cleanup, or earlier for a benchmark that needs a fresh
	// hotswap each iteration. Only the first call does anything.
	Stop func()
}

// Serve runs hotswap on the configuration text, with memory measured by
// mem. withMetrics wires in the metrics, the event hub and the admin API
// as cmd/hotswap does (what the load generator reads swaps from); without,
// hotswap is the proxy alone, logging nothing.
func Serve(tb testing.TB, text string, mem probe.Memory, withMetrics bool) *Hotswap {
	tb.Helper()
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		tb.Fatal(err)
	}
	starts := &mocktest.Starter{}
	var hub *events.Hub
	if withMetrics {
		hub = events.NewHub(nil)
	}
	var px *proxy.Server // as cmd/hotswap wires it: idle connections closed before a stop
	sw := swapper.New(swapper.Options{Models: cfg.Models, Ports: cfg.Ports, Log: zap.NewNop(), Memory: mem, Starter: starts,
		Events: hub, BeforeStop: func(model string, instance uint64) {
			if px != nil {
				px.CloseIdle(model, instance)
			}
		}})
	rt := router.New(sw, router.ConfigOptions(cfg, zap.NewNop()))
	opts := proxy.Options{Config: cfg, Router: rt, Status: sw.Status, Log: zap.NewNop()}
	var ctl *control.Controller
	if withMetrics {
		mx := metrics.New(cfg.ModelIDs, sw, rt)
		mx.Listen(hub)
		opts.Metrics, opts.Events = mx, hub
		ctl = control.New(control.Options{Config: cfg, Lifecycle: sw, Door: rt, Events: hub})
		opts.Admin = ctl
	}
	px = proxy.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if ctl != nil {
			ctl.Close()
		}
		sw.Close(context.Background())
		tb.Fatal(err)
	}
	go px.Serve(ln)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			rt.Close()
			px.Shutdown(ctx)
			sw.Close(ctx)
			if ctl != nil {
				ctl.Close()
			}
		})
	}
	tb.Cleanup(stop)
	return &Hotswap{URL: "http://" + ln.Addr().String(), Swapper: sw, Router: rt, Starts: starts, Stop: stop}
}
