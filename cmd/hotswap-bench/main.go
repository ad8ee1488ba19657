// Command hotswap-bench is hotswap's load generator, the program behind
// `hotswap bench`: it sends an OpenAI workload to hotswap or any other
// endpoint and reports latency, time to first token, tokens a second and
// the swaps the traffic caused (bench/loadgen; README, "Benchmarking your
// setup").
//
//	hotswap-bench -target URL -models MODEL,... [flags]
//	hotswap bench -target URL -models MODEL,... [flags]   # the same program
//
// It is a program of its own so that its plotting, fonts and PDF code stay
// out of the proxy's binary and memory.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hotswap/hotswap/bench/loadgen"
)

func main() {
	// The first Ctrl-C (or SIGTERM) stops the run, and the report of what
	// ran is still written; after it, the signals are Go's again, so that
	// a second Ctrl-C kills.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := loadgen.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
