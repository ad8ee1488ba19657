// Command hotswap is an OpenAI-compatible reverse proxy that starts each
// model's backend when a request needs it and stops others to make room.
//
//	hotswap -config config.yaml [-listen 127.0.0.1:8080] [-watch]
//	hotswap check -config config.yaml
//	hotswap bench -target URL -models MODEL,... [flags]
//	hotswap import llama-swap FILE
//	hotswap version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/control"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/metrics"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/process"
	"github.com/hotswap/hotswap/proxy"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/state"
	"github.com/hotswap/hotswap/swapper"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return check(args[1:], stderr)
		case "version", "-version", "--version":
			fmt.Fprintln(stderr, versionLine())
			return 0
		case "guard":
			return guard(args[1:], os.Stdin, stderr)
		case "bench":
			return runBench(args[1:], stderr)
		case "import":
			return importConfig(args[1:], os.Stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("hotswap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.yaml", "configuration file")
	listen := fs.String("listen", "", "address to listen on (overrides the config's listen)")
	pprofAddr := fs.String("pprof", "", "serve Go's profiler (/debug/pprof/) on this address, such as 127.0.0.1:6060; keep it on loopback")
	watch := fs.Bool("watch", false, "reload the configuration when its file changes (the same validated reload as SIGHUP: a broken save is refused)")
	watchInterval := fs.Duration("watch-interval", time.Second, "how often -watch looks at the file; a change is reloaded once it has held still this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: hotswap [-config FILE] [-listen ADDR] [-pprof ADDR] [-watch [-watch-interval 1s]]\n       hotswap check [-config FILE]\n       hotswap bench -target URL -models MODEL,... [flags] (hotswap bench -h)\n       hotswap import llama-swap FILE\n       hotswap version")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var watched *configWatch
	if *watch {
		if *watchInterval <= 0 {
			fmt.Fprintln(stderr, "-watch-interval must be more than 0")
			return 2
		}
		// Read before the load: a save in between is then seen as a
		// change, never taken for the file in use.
		watched = newConfigWatch(*path, *watchInterval, clock.Real{})
	}
	// As check does: a model whose program cannot run would only ever
	// fail to start.
	cfg, err := config.LoadRunnable(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// What the command line sets wins over the file, at start and at
	// every reload.
	override := func(c *config.Config) {
		if *listen != "" {
			c.Listen = *listen
		}
	}
	override(cfg)
	level, err := zap.ParseAtomicLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	hub := events.NewHub(nil)
	log, stopLog := newLogger(level, stderr, hub)
	defer stopLog()
	log.Info("hotswap starting", zap.String("version", versionLine()))
	if *pprofAddr != "" {
		stop, err := servePprof(*pprofAddr, log)
		if err != nil {
			log.Error("hotswap stopped", zap.Error(err))
			return 1
		}
		defer stop()
	}
	if err := serve(*path, cfg, override, log, level, hub, watched); err != nil {
		log.Error("hotswap stopped", zap.Error(err))
		return 1
	}
	return 0
}

// check validates a configuration and lists every problem, programs that
// cannot run among them: it refuses what hotswap would refuse to start
// with, here, from this directory.
func check(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("hotswap check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.LoadRunnable(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	variants := 0
	for _, m := range cfg.Models {
		variants += len(m.Variants)
	}
	fmt.Fprintf(stderr, "%s: ok, %s", *path, count(len(cfg.Models), "model"))
	if variants > 0 {
		fmt.Fprintf(stderr, " (%s)", count(variants, "variant"))
	}
	fmt.Fprintln(stderr)
	return 0
}

// count says n things: "1 model", "2 models".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// newLogger writes to w at level, and hands every line to hub too, for
// GET /admin/events?logs=true. Lines are buffered and written at least
// every logFlush, so that a line per request does not cost a write of its
// own; a warning or an error is written at once, with what came before
// it. stop writes what is left.
func newLogger(level zap.AtomicLevel, w io.Writer, hub *events.Hub) (log *zap.Logger, stop func()) {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000Z07:00")
	// Only the writer: a log file's Sync is an fsync, which a flush every
	// logFlush does not need.
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(struct{ io.Writer }{w}), Size: 256 << 10, FlushInterval: logFlush}
	core := flushAt{zapcore.NewCore(zapcore.NewConsoleEncoder(enc), ws, level), zap.WarnLevel}
	return zap.New(zapcore.NewTee(core, events.LogCore(hub, level))), func() { _ = ws.Stop() }
}

// logFlush bounds how late a buffered log line is written.
const logFlush = 100 * time.Millisecond

// flushAt is a core that syncs after every entry at level at or above.
type flushAt struct {
	zapcore.Core
	at zapcore.Level
}

func (c flushAt) With(fields []zapcore.Field) zapcore.Core {
	return flushAt{c.Core.With(fields), c.at}
}

func (c flushAt) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c flushAt) Write(e zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(e, fields)
	if e.Level >= c.at {
		err = errors.Join(err, c.Core.Sync())
	}
	return err
}

// serve runs hotswap until SIGINT or SIGTERM, then stops every backend.
// SIGHUP reloads the configuration from path, and so does a change that
// watch (nil: no -watch) sees.
func serve(path string, cfg *config.Config, override func(*config.Config), log *zap.Logger, level zap.AtomicLevel, hub *events.Hub, watch *configWatch) error {
	// HOTSWAP_SYSFS_ROOT and HOTSWAP_PROC_ROOT point the probe at fake
	// /sys and /proc trees: a testing aid, unset in normal use.
	mem := probe.NewMemoryWith(log, probe.MemoryOptions{
		SysRoot:  os.Getenv("HOTSWAP_SYSFS_ROOT"),
		ProcRoot: os.Getenv("HOTSWAP_PROC_ROOT"),
	})
	if c, ok := mem.(io.Closer); ok {
		defer c.Close()
	}
	statePath := cfg.Memory.StateFile
	if statePath == "" {
		statePath = defaultStatePath()
	}
	learned, err := state.Open(statePath)
	if err != nil {
		log.Warn("ignoring the state file (learned footprints, mode memory)", zap.Error(err))
	}
	starter := &process.ExecStarter{}
	if exe, err := os.Executable(); err == nil {
		starter.Guard = []string{exe, "guard"}
	} else {
		log.Warn("no guard for backends' children: hotswap cannot find its own binary", zap.Error(err))
	}
	var px *proxy.Server
	sw := swapper.New(swapper.Options{
		Starter:      starter,
		Models:       cfg.Models,
		Ports:        cfg.Ports,
		Log:          log,
		Memory:       mem,
		ReserveRAM:   cfg.Memory.ReserveRAM,
		ReserveVRAM:  cfg.Memory.ReserveVRAM,
		LimitRAM:     cfg.Memory.LimitRAM,
		CooldownMax:  cfg.Memory.CooldownMax,
		DrainTimeout: cfg.Scheduling.DrainTimeout,
		Eviction:     cfg.Scheduling.Eviction,
		Footprints:   learned,
		Events:       hub,
		// A drained backend's idle connections are closed before it is
		// stopped: llama-server waits on them before it exits.
		BeforeStop: func(model string, instance uint64) {
			if px != nil {
				px.CloseIdle(model, instance)
			}
		},
	})
	rt := router.New(sw, router.ConfigOptions(cfg, log.Named("router")))
	mx := metrics.New(cfg.ModelIDs, sw, rt)
	mx.Listen(hub)
	picker := metrics.NewEndpoint(metrics.EndpointOptions{Config: cfg, Source: sw, Queues: rt, Planner: sw})
	ctl := control.New(control.Options{
		Config: cfg, Lifecycle: sw, Door: rt, Modes: control.StateModes{File: learned}, Learned: learned, Events: hub, Log: log.Named("control"),
		Path: path, Override: override,
		OnReload: []func(*config.Config){
			func(c *config.Config) { px.Reconfigure(c) },
			func(c *config.Config) { mx.SetModels(c.ModelIDs) },
			picker.SetConfig,
			func(c *config.Config) { _ = level.UnmarshalText([]byte(c.LogLevel)) }, // valid: config checked it
		},
	})
	px = proxy.New(proxy.Options{Config: cfg, Router: rt, Status: sw.Status, Log: log,
		Admin: ctl, Events: hub, Metrics: mx, EndpointMetrics: picker.Handler(),
		SessionFile: filepath.Join(filepath.Dir(statePath), "revoked-sessions.json")})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		sw.Close(context.Background())
		return err
	}
	// The endpoint picker's own listener, bound before anything is
	// served, so that a taken address is said at start.
	var pickerLn net.Listener
	if addr := cfg.EndpointPicker.Listen; addr != "" {
		if pickerLn, err = net.Listen("tcp", addr); err != nil {
			ln.Close()
			sw.Close(context.Background())
			return fmt.Errorf("endpoint_picker.listen: %w", err)
		}
		log.Info("serving /metrics/endpoint without a key for an endpoint picker", zap.String("addr", pickerLn.Addr().String()))
	}
	log.Info("hotswap listening", zap.String("addr", ln.Addr().String()), zap.Strings("models", cfg.ModelIDs))
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && len(cfg.AdminKeys)+len(cfg.APIKeys) == 0 {
		log.Warn("anyone who can reach this address can unload models and reload the configuration: " +
			"set admin_keys (or api_keys)")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go mx.Record(ctx, 5*time.Second) // the status page's plots
	// Preloads go through the door, as every load does.
	var preloads sync.WaitGroup
	for _, id := range cfg.ModelIDs {
		if cfg.Models[id].Preload {
			preloads.Add(1)
			go func() {
				defer preloads.Done()
				if err := rt.Load(ctx, id, router.LoadOptions{Reason: "preload"}); err != nil && ctx.Err() == nil {
					log.Warn("preload failed", zap.String("model", id), zap.Error(err))
				}
			}()
		}
	}

	// Reloads are made off the signal loop, one at a time, so that a
	// SIGTERM is always heard at once; SIGHUPs that come during one are
	// one more reload after it. A change -watch sees takes this same
	// path, as if it were a SIGHUP.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-hup:
				// The outcome is logged by the reload itself (what
				// changed, or every reason it was refused).
				ctl.Reload(ctx) //nolint:errcheck
			case <-changed:
				log.Info("the configuration file changed; reloading", zap.String("path", path))
				ctl.Reload(ctx) //nolint:errcheck
			case <-ctx.Done():
				return
			}
		}
	}()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var watching sync.WaitGroup
	if watch != nil {
		log.Info("watching the configuration file", zap.String("path", path), zap.Duration("interval", watch.interval))
		watching.Add(1)
		go func() {
			defer watching.Done()
			watch.run(watchCtx, log, func() {
				// A change while a reload is due already is that reload:
				// it reads the file as it is then.
				select {
				case changed <- struct{}{}:
				default:
				}
			})
		}()
	}

	served := make(chan error, 1)
	go func() { served <- px.Serve(ln) }()
	if pickerLn != nil {
		go func() {
			if err := px.ServeEndpointMetrics(pickerLn); err != nil {
				log.Warn("the endpoint picker's listener stopped", zap.Error(err))
			}
		}()
	}
	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("shutting down")
		leave(px.Config().EndpointPicker.Leave, picker, log)
	}
	// Queued requests are told at once, and operators' commands called
	// off (a mode switch waiting for a drain among them); in-flight
	// answers get a grace period; then backends are stopped under
	// whatever is left. The watcher goes first, so that it asks for no
	// reload during a shutdown.
	stopWatch()
	watching.Wait()
	rt.Close()
	ctl.Close()
	grace, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace)
	defer cancel()
	if serr := px.Shutdown(grace); serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
		log.Warn("proxy shutdown", zap.Error(serr))
	}
	preloads.Wait()
	sw.Close(grace)
	log.Info("all backends stopped")
	return err
}

// leave serves on for d (endpoint_picker.leave), saying on
// /metrics/endpoint that this host is leaving, so that an endpoint picker
// sends nothing new here before the listener closes: requests it sent
// already, and those it sends until its next scrape, are served. A
// second SIGINT or SIGTERM cuts it short.
func leave(d time.Duration, picker *metrics.Endpoint, log *zap.Logger) {
	if d <= 0 {
		return
	}
	picker.Leave()
	log.Info("leaving: serving on while the endpoint picker sends requests elsewhere", zap.Duration("for", d))
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(again)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-again:
		log.Info("told again to stop: leaving now")
	}
}

// defaultStatePath is where learned footprints live unless the config
// says otherwise: the user's state directory.
func defaultStatePath() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "hotswap", "footprints.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "" // in memory only
	}
	if runtime.GOOS == "darwin" {
		return filepath.Join(home, "Library", "Application Support", "hotswap", "footprints.json")
	}
	return filepath.Join(home, ".local", "state", "hotswap", "footprints.json")
}
