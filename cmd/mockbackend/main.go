// Command mockbackend is a small, real OpenAI-speaking server that pretends
// to be a model backend. hotswap's tests, benchmarks and example config run
// it: it can take a given time to load, hold real memory, stream at a given
// rate, fail to start (and say why), hang, crash mid-request, answer
// every Nth request with an error, or ignore SIGTERM, and it can mimic real backends' connection habits, so every
// behaviour of hotswap is testable without a GPU or model weights. It can
// keep the bodies it receives for tests to read (-keep-bodies, GET
// /mock/bodies), and check the model a request names as vLLM does
// (-served-model-name).
//
//	mockbackend -port 9001 -model llama -startup 2s -hold 300MiB
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hotswap/hotswap/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command: it serves until SIGTERM or SIGINT and returns
// the exit status. Ends decided elsewhere (a failed load, a crash on
// request) call os.Exit themselves, as a real backend dying would.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}

	// Signals first: hotswap may send SIGTERM the moment the process
	// exists, and -ignore-sigterm must already hold then.
	sigs := make(chan os.Signal, 1)
	if opts.ignoreSIGTERM {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(sigs, syscall.SIGINT)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	}

	// Listen before loading, as real backends do: hotswap polls /health
	// and must get 503 "loading", not a refused connection.
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	m := newMock(opts, stdout, stderr, os.Exit)
	srv := m.server()
	conns := watchConns(srv)
	go srv.Serve(ln) //nolint:errcheck // it serves until the process ends
	go m.load(context.Background(), ln.Addr().String())

	<-sigs
	if opts.exitIdleWait > 0 {
		conns.waitClosed(opts.exitIdleWait, stdout)
	}
	// No graceful drain: a backend told to stop should stop at once, and
	// hotswap's tests of stopping want a prompt exit. A hung one stays
	// silent to the end.
	if !opts.hang {
		fmt.Fprintln(stdout, "shutting down")
	}
	m.dropWeights()
	return 0
}

// options are the command's flags, checked.
type options struct {
	listen           string // host:port, always a loopback address
	model            string
	startup          time.Duration
	progressInterval time.Duration
	hold             int64 // bytes
	failStart        bool
	// weights is a file read whole as the mock loads; weightsCold drops
	// it from the page cache at exit (see weights.go).
	weights        string
	weightsCold    bool
	failMessage    string // what a failed start prints last
	failStatus     int
	failKill       bool // a failed start is a SIGKILL, as from the OOM killer
	hang           bool
	streamInterval time.Duration
	tokens         int
	latency        time.Duration
	crashAfter     int
	errorEvery     int // every Nth model POST is answered with an error (0: never)
	errorStatus    int // the HTTP status of those errors
	ignoreSIGTERM  bool
	exitIdleWait   time.Duration
	quiet          bool // print nothing, not even when ready
	dim            int
	// Connection habits of real backends (llama-server has the first
	// three, Python's servers the last).
	closeAfterStream bool
	idleTimeout      time.Duration
	cors             bool
	splitWrites      bool // Python's http.server: headers and body in two writes, Nagle on
	gzip             bool // Starlette's GZipMiddleware: JSON answers gzipped when accepted
	// What tests look at: the bodies of the last keepBodies model POSTs
	// (GET /mock/bodies), and vLLM's check of the model a request names.
	keepBodies int
	served     []string // vLLM's --served-model-name
	// vLLM's sleep mode (see sleep.go).
	sleepMode bool
	wakeTime  time.Duration
	// failSleep and failWake make /sleep and /wake_up answer 500 and do
	// nothing, as a vLLM whose sleep or wake went wrong.
	failSleep, failWake bool
}

// parseFlags parses and checks the flags. On a bad flag it has already
// printed the problem and the usage to out.
func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mockbackend", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mockbackend -port N [flags]\n\nA mock OpenAI-compatible model backend for testing hotswap.\n\nFlags:")
		fs.PrintDefaults()
	}
	port := fs.Int("port", 0, "port to listen on, on 127.0.0.1 (required unless -listen is given)")
	fs.StringVar(&o.listen, "listen", "", "loopback address to listen on, such as 127.0.0.1:0 (instead of -port)")
	fs.StringVar(&o.model, "model", "mock", "model id to report")
	fs.DurationVar(&o.startup, "startup", 0, "time spent loading; /health answers 503 until it has passed")
	fs.DurationVar(&o.progressInterval, "progress-interval", 200*time.Millisecond, "how often to print a progress line while loading (0: never)")
	hold := fs.String("hold", "0", "real memory to allocate and touch while loading, such as 300MiB (units B, KiB, MiB, GiB, KB, MB, GB)")
	fs.BoolVar(&o.failStart, "fail-start", false, "after -startup, print -fail-message and exit with -fail-status")
	fs.StringVar(&o.weights, "weights", "", "a file read whole while loading, as a backend reads its weights: fast from the page cache, slow from disk")
	fs.BoolVar(&o.weightsCold, "weights-cold", false, "with -weights, drop the file from the page cache at exit, as a machine that cannot cache every model it swaps between")
	fs.StringVar(&o.failMessage, "fail-message", "", "the last line a failed start prints (default: an out-of-memory error naming the model)")
	fs.IntVar(&o.failStatus, "fail-status", 1, "the exit status of a failed start (0 too: some backends exit 0 on errors)")
	fs.BoolVar(&o.failKill, "fail-kill", false, "a failed start prints nothing and dies of SIGKILL, as when the kernel's out-of-memory killer strikes")
	fs.BoolVar(&o.hang, "hang", false, "never become ready, and print nothing")
	fs.DurationVar(&o.streamInterval, "stream-interval", 20*time.Millisecond, "delay between streamed chunks")
	fs.IntVar(&o.tokens, "tokens", 8, "content chunks in a completion")
	fs.DurationVar(&o.latency, "latency", 0, "extra delay before answering each POST to a model endpoint")
	fs.IntVar(&o.crashAfter, "crash-after", 0, "the Nth POST to a model endpoint kills the process with status 3, mid-stream for a stream (0: never)")
	fs.IntVar(&o.errorEvery, "error-every", 0, "answer every Nth POST to a model endpoint with an OpenAI-format error of status -error-status, before any stream begins (0: never)")
	fs.IntVar(&o.errorStatus, "error-status", http.StatusInternalServerError, "the HTTP status of -error-every's errors, 400 to 599")
	fs.BoolVar(&o.ignoreSIGTERM, "ignore-sigterm", false, "ignore SIGTERM, so that only SIGKILL (or SIGINT) stops it")
	fs.DurationVar(&o.exitIdleWait, "exit-idle-wait", 0, "on SIGTERM, wait until its open (keep-alive) connections close, or this long, before exiting, as llama-server does; says how many were open (0: exit at once)")
	fs.IntVar(&o.dim, "dim", 8, "embedding dimension")
	fs.BoolVar(&o.quiet, "quiet", false, "print nothing, not even progress or the ready line, as some backends do")
	fs.BoolVar(&o.closeAfterStream, "close-after-stream", false, "close the connection after each streamed answer without a Connection: close header (llama-server does)")
	fs.BoolVar(&o.cors, "cors", false, "allow any origin: Access-Control-Allow-Origin echoes each request's Origin (llama-server does)")
	fs.BoolVar(&o.splitWrites, "split-writes", false, "write each answer's headers and body in two writes, with TCP_NODELAY off (Python's http.server and Flask's development server do)")
	fs.BoolVar(&o.gzip, "gzip", false, "gzip JSON answers for clients that accept it, as a Python server behind Starlette's GZipMiddleware does (event streams stay as they are)")
	fs.IntVar(&o.keepBodies, "keep-bodies", 0, "keep the bodies of the last N model POSTs as they arrived, for GET /mock/bodies (0: none)")
	served := fs.String("served-model-name", "", "comma-separated names the backend serves, as vLLM's --served-model-name: a request naming another model gets vLLM's 404, and answers carry the first name")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 0, "close keep-alive connections idle this long, announcing it in a Keep-Alive header (llama-server: 5s; 0: never)")
	fs.BoolVar(&o.sleepMode, "sleep-mode", false, "serve vLLM's POST /sleep?level=1|2, POST /wake_up and GET /is_sleeping (vLLM with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1): sleeping gives the -hold memory back, waking takes it again")
	fs.DurationVar(&o.wakeTime, "wake-time", 200*time.Millisecond, "with -sleep-mode, the least time a wake takes")
	fs.BoolVar(&o.failSleep, "fail-sleep", false, "with -sleep-mode, POST /sleep answers 500 and the mock stays awake")
	fs.BoolVar(&o.failWake, "fail-wake", false, "with -sleep-mode, POST /wake_up answers 500 and the mock stays asleep")
	// The problem is printed after the usage, so that it is the last line,
	// where real backends print theirs and where hotswap looks.
	bad := func(format string, a ...any) (options, error) {
		err := fmt.Errorf(format, a...)
		fs.SetOutput(out)
		fs.Usage()
		fmt.Fprintln(out, "error:", err)
		return o, err
	}
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fs.Usage()
			return o, err
		}
		return bad("%v", err)
	}
	fs.SetOutput(out)
	if fs.NArg() > 0 {
		return bad("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.hold, err = config.ParseSize(*hold); err != nil {
		return bad("-hold: %v", err)
	}
	switch {
	case o.listen != "" && *port != 0:
		return bad("give -port or -listen, not both")
	case o.listen == "" && (*port < 1 || *port > 65535):
		return bad("-port must be 1 to 65535 (or give -listen)")
	case o.listen == "":
		o.listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	case !loopback(o.listen):
		return bad("-listen %q: must be a loopback address such as 127.0.0.1:PORT", o.listen)
	}
	if o.startup < 0 || o.progressInterval < 0 || o.streamInterval < 0 || o.latency < 0 || o.idleTimeout < 0 || o.exitIdleWait < 0 {
		return bad("durations must not be negative")
	}
	if o.wakeTime < 0 {
		return bad("-wake-time must not be negative")
	}
	if o.tokens < 0 || o.crashAfter < 0 || o.errorEvery < 0 || o.keepBodies < 0 {
		return bad("-tokens, -crash-after, -error-every and -keep-bodies must not be negative")
	}
	if *served != "" {
		for _, name := range strings.Split(*served, ",") {
			if name = strings.TrimSpace(name); name == "" {
				return bad("-served-model-name %q: an empty name", *served)
			} else {
				o.served = append(o.served, name)
			}
		}
	}
	if o.errorStatus < 400 || o.errorStatus > 599 {
		return bad("-error-status must be 400 to 599")
	}
	if o.failStatus < 0 || o.failStatus > 255 {
		return bad("-fail-status must be 0 to 255")
	}
	if o.failMessage == "" {
		o.failMessage = "error: failed to load model " + o.model + ": out of memory (mock)"
	}
	if o.dim < 1 {
		return bad("-dim must be at least 1")
	}
	return o, nil
}

// loopback reports whether addr (host:port) names this machine only: the
// mock is a test fixture and has no business on the network.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
