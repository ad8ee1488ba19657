// Command mockbackend is a small, real OpenAI-speaking server that pretends
// to be a model backend. hotswap's tests, benchmarks and example config run
// it: it can take a given time to load, hold real memory, stream at a given
// rate, fail to start, hang, crash mid-request, or ignore SIGTERM, so every
// behaviour of hotswap is testable without a GPU or model weights.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	opts, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	m := newMock(opts, os.Stdout)
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with the process

	sigs := make(chan os.Signal, 1)
	if opts.ignoreSIGTERM {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(sigs, syscall.SIGINT)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	}
	go m.load(ln.Addr().String())
	select {
	case <-sigs:
		fmt.Fprintln(os.Stdout, "shutting down")
		return 0
	case code := <-m.exit:
		return code
	}
}

// options are the command's flags.
type options struct {
	listen           string
	model            string
	startup          time.Duration
	progressInterval time.Duration
	hold             int64
	failStart        bool
	hang             bool
	streamInterval   time.Duration
	tokens           int
	latency          time.Duration
	crashAfter       int64
	ignoreSIGTERM    bool
	dim              int
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("mockbackend", flag.ContinueOnError)
	port := fs.Int("port", 0, "port to listen on, on 127.0.0.1")
	fs.StringVar(&o.listen, "listen", "", "address to listen on (instead of -port)")
	fs.StringVar(&o.model, "model", "mock", "model id it reports")
	fs.DurationVar(&o.startup, "startup", 0, "time spent loading before /health answers 200")
	fs.DurationVar(&o.progressInterval, "progress-interval", 200*time.Millisecond, "how often to print a progress line while loading; 0 = never")
	hold := fs.String("hold", "0", "memory to allocate and touch while loading (e.g. 300MiB)")
	fs.BoolVar(&o.failStart, "fail-start", false, "exit 1 with an error at the end of loading")
	fs.BoolVar(&o.hang, "hang", false, "never become ready, and print nothing")
	fs.DurationVar(&o.streamInterval, "stream-interval", 20*time.Millisecond, "delay between streamed chunks")
	fs.IntVar(&o.tokens, "tokens", 8, "tokens in a completion")
	fs.DurationVar(&o.latency, "latency", 0, "extra delay before each answer")
	fs.Int64Var(&o.crashAfter, "crash-after", 0, "the Nth request kills the process (0 = never)")
	fs.BoolVar(&o.ignoreSIGTERM, "ignore-sigterm", false, "ignore SIGTERM")
	fs.IntVar(&o.dim, "dim", 8, "embedding dimension")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.hold, err = parseSize(*hold); err != nil {
		fmt.Fprintln(fs.Output(), "-hold:", err)
		fs.Usage()
		return o, err
	}
	if o.listen == "" {
		if *port <= 0 {
			fmt.Fprintln(fs.Output(), "-port or -listen is required")
			fs.Usage()
			return o, errors.New("no port")
		}
		o.listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	}
	if o.tokens < 1 {
		o.tokens = 1
	}
	return o, nil
}

// parseSize reads 300MiB, 1GB, 4096 and the like.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}

// load plays the part of loading a model: it takes memory, reports
// progress, and then becomes ready, fails or hangs as told.
func (m *mock) load(addr string) {
	if m.opts.hang {
		return
	}
	m.ballast = make([]byte, m.opts.hold)
	// Touch every page so the memory is resident, as loaded weights are.
	for i := 0; i < len(m.ballast); i += 4096 {
		m.ballast[i] = 1
	}
	deadline := time.Now().Add(m.opts.startup)
	if m.opts.progressInterval > 0 && m.opts.startup > 0 {
		tick := time.NewTicker(m.opts.progressInterval)
		for now := time.Now(); now.Before(deadline); now = <-tick.C {
			pct := 100 - int(100*time.Until(deadline)/m.opts.startup)
			fmt.Fprintf(m.out, "loading model %s: %d%%\n", m.opts.model, pct)
		}
		tick.Stop()
	}
	time.Sleep(time.Until(deadline))
	if m.opts.failStart {
		fmt.Fprintf(os.Stderr, "error: failed to load model %s: out of memory (mock)\n", m.opts.model)
		m.exit <- 1
		return
	}
	m.ready.Store(true)
	fmt.Fprintf(m.out, "model %s ready on %s\n", m.opts.model, addr)
}

// crash ends the process as a backend dying of a bug would.
func (m *mock) crash() {
	fmt.Fprintf(m.out, "mock %s: crashing as told (-crash-after %d)\n", m.opts.model, m.opts.crashAfter)
	os.Exit(3)
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
