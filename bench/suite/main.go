// Command suite is `make bench`: a short standard set of `hotswap bench`
// runs against the bundled config.yaml's hotswap and against its chat
// model's backend reached directly, on this machine. It writes every
// figure to a JSON file, the plots as SVG, and regenerates the suite's
// section of BENCHMARKS.md from that JSON.
//
//	go run ./bench/suite [-hotswap bin/hotswap] [-config config.yaml] [-out bench/results] [-md BENCHMARKS.md]
//	go run ./bench/suite -from bench/results/suite.json -md BENCHMARKS.md   # the page only
//	go run ./bench/suite -scenario swapcost   # only LRU against cost eviction (swapcost.json, swapcost.svg)
//	go run ./bench/suite -scenario sleep      # only sleep against stop (sleep.json)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hotswap/hotswap/bench/loadgen"
	"github.com/hotswap/hotswap/config"
)

// Suite is what suite.json holds.
type Suite struct {
	Date      time.Time  `json:"date"`
	Command   string     `json:"command"`
	Machine   Machine    `json:"machine"`
	Scenarios []Scenario `json:"scenarios"`
}

// Machine is where the suite ran.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Memory string `json:"memory"`
	OS     string `json:"os"`
	Go     string `json:"go"`
	Commit string `json:"commit,omitempty"`
}

// Scenario is one bench run of the suite.
type Scenario struct {
	Name    string          `json:"name"`
	Title   string          `json:"title"`
	What    string          `json:"what"`
	Command string          `json:"command"` // the hotswap bench line that reproduces it
	Report  *loadgen.Report `json:"report"`
	Plots   []string        `json:"plots"` // SVG files, relative to the JSON
}

func main() {
	hotswap := flag.String("hotswap", "bin/hotswap", "the hotswap binary")
	cfgPath := flag.String("config", "config.yaml", "the configuration to serve")
	out := flag.String("out", "bench/results", "where suite.json and the plots go")
	md := flag.String("md", "BENCHMARKS.md", "the page whose suite section is regenerated (empty: none)")
	from := flag.String("from", "", "regenerate the page from this suite.json instead of running")
	short := flag.Bool("short", false, "shorter runs, for a quick look")
	only := flag.String("scenario", "", "run only this scenario: swapcost (LRU against cost eviction; writes swapcost.json and swapcost.svg, not the page), "+
		"sleep (alternating requests for two models that fit one awake beside the other asleep, with and without sleep; writes sleep.json)")
	flag.Parse()
	var err error
	switch *only {
	case "":
		err = run(*hotswap, *cfgPath, *out, *md, *from, *short)
	case "swapcost":
		err = runOnly(runSwapCost, *hotswap, *cfgPath, *out, *short)
	case "sleep":
		err = runOnly(runSleep, *hotswap, *cfgPath, *out, *short)
	default:
		err = fmt.Errorf("-scenario %q: the scenarios run alone are swapcost and sleep", *only)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "suite:", err)
		os.Exit(1)
	}
}

func run(hotswap, cfgPath, out, md, from string, short bool) error {
	if from != "" {
		var s Suite
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w", from, err)
		}
		return writePage(md, &s, filepath.Dir(from))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	s := &Suite{Date: time.Now().UTC(), Machine: machine(),
		Command: "make bench (go run ./bench/suite -hotswap " + hotswap + " -config " + cfgPath + ")"}
	scale := time.Duration(1)
	if short {
		scale = 4 // a quarter of each run
	}
	for _, sc := range scenarios(scale) {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "suite: %s\n", sc.title)
		rep, cmdline, err := runScenario(ctx, hotswap, cfgPath, sc)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		plots, err := rep.Plots()
		if err != nil {
			return err
		}
		entry := Scenario{Name: sc.name, Title: sc.title, What: sc.what, Command: cmdline, Report: rep}
		for name, svg := range plots {
			file := sc.name + "-" + name
			if err := os.WriteFile(filepath.Join(out, file), svg, 0o644); err != nil {
				return err
			}
			entry.Plots = append(entry.Plots, file)
		}
		slices.Sort(entry.Plots)
		if err := rep.WriteHTML(filepath.Join(out, sc.name+".html")); err != nil {
			return err
		}
		s.Scenarios = append(s.Scenarios, entry)
		rep.WriteTable(os.Stdout) //nolint:errcheck
		fmt.Println()
	}
	if ctx.Err() == nil {
		// Its figures go to swapcost.json; its section of the page is by hand.
		if err := runSwapCost(ctx, hotswap, cfgPath, out, short); err != nil && ctx.Err() == nil {
			return err
		}
	}
	if ctx.Err() == nil {
		// So do the sleep scenario's, to sleep.json.
		if err := runSleep(ctx, hotswap, cfgPath, out, short); err != nil && ctx.Err() == nil {
			return err
		}
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "suite.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errors.New("interrupted: suite.json holds what ran; the page is left as it was")
	}
	return writePage(md, s, out)
}

// runOnly runs one scenario of its own (swapcost, sleep), which writes
// its JSON to out and leaves the page alone.
func runOnly(scenario func(ctx context.Context, hotswap, cfgPath, out string, short bool) error,
	hotswap, cfgPath, out string, short bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return scenario(ctx, hotswap, cfgPath, out, short)
}

// scenario is one run: which hotswap settings, whether the chat model's
// backend is also measured directly, and the bench flags.
type scenario struct {
	name, title, what string
	policy            string // fifo or batch; "" keeps the config's
	limitRAM          string // memory.limit_ram; "" keeps the config's
	parallel          int    // chat-small's parallel; 0 keeps the config's
	direct            bool
	args              []string // bench flags, without -target
}

func scenarios(scale time.Duration) []scenario {
	d := func(s time.Duration) string { return (s / scale).String() }
	return []scenario{
		{name: "warm-c1", title: "Warm overhead, 1 user",
			what:   "chat-small loaded; one user sends small chat completions back to back, through hotswap and to the backend directly",
			direct: true, args: []string{"-models", "chat-small", "-users", "1", "-duration", d(8 * time.Second), "-max-tokens", "8"}},
		{name: "warm-c64", title: "Warm overhead, 64 users",
			what:     "the same with 64 users at once; chat-small's parallel is raised from 4 to 64, so that hotswap sends on what the backend would take: its overhead, not the limit, is measured",
			parallel: 64, direct: true, args: []string{"-models", "chat-small", "-users", "64", "-duration", d(8 * time.Second), "-max-tokens", "8"}},
		{name: "stream", title: "Streaming, 8 users",
			what:     "streamed chat completions (8 tokens 30 ms apart, chat-small's parallel raised to 8): time to first token and inter-token gaps, through hotswap and directly. chat-small closes the connection after each stream, as llama-server does: a client that keeps connections alive (this one, like most) loses some requests to it directly, and none through hotswap",
			parallel: 8, direct: true, args: []string{"-models", "chat-small", "-users", "8", "-stream", "-duration", d(12 * time.Second)}},
		{name: "swap-fifo", title: "Two models that do not fit together, fifo",
			what:     "chat-small and chat-large under limit_ram 400MiB (they need 96 + 320 MiB); 4 users, 2 on each model; scheduling.policy fifo",
			policy:   "fifo",
			limitRAM: "400MiB", args: []string{"-models", "chat-small,chat-large", "-users", "4", "-duration", d(40 * time.Second)}},
		{name: "swap-batch", title: "Two models that do not fit together, batch",
			what:     "the same under scheduling.policy batch with max_wait 10s",
			policy:   "batch",
			limitRAM: "400MiB", args: []string{"-models", "chat-small,chat-large", "-users", "4", "-duration", d(40 * time.Second)}},
	}
}

// runScenario starts hotswap (and the direct backend) for sc, warms the
// model up so that the first load is not measured (except where swaps are
// the point), runs the bench, and stops everything.
func runScenario(ctx context.Context, hotswap, cfgPath string, sc scenario) (*loadgen.Report, string, error) {
	dir, err := os.MkdirTemp("", "hotswap-suite-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	cfgFile, cfg, err := variant(cfgPath, dir, sc)
	if err != nil {
		return nil, "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	stopHotswap, err := startProcess(ctx, []string{hotswap, "-config", cfgFile, "-listen", addr}, filepath.Join(dir, "hotswap.log"),
		"http://"+addr+"/health")
	if err != nil {
		return nil, "", fmt.Errorf("hotswap: %w", err)
	}
	defer stopHotswap()
	targets := []string{"-target", "hotswap=http://" + addr}
	if sc.direct {
		m := cfg.Models["chat-small"]
		daddr, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		_, port, _ := net.SplitHostPort(daddr)
		var p int
		fmt.Sscan(port, &p)
		argv, _, _ := m.Expand(p)
		stopDirect, err := startProcess(ctx, argv, filepath.Join(dir, "direct.log"), "http://"+daddr+m.Health)
		if err != nil {
			return nil, "", fmt.Errorf("the direct backend: %w", err)
		}
		defer stopDirect()
		targets = append(targets, "-target", "direct=http://"+daddr)
		// Warm hotswap's model up: its load is not the overhead measured.
		if err := warm("http://"+addr, "chat-small"); err != nil {
			return nil, "", err
		}
	}
	args := append(append(targets, sc.args...), "-seed", "1")
	o, err := loadgen.Parse(args, io.Discard)
	if err != nil {
		return nil, "", err
	}
	rep, err := loadgen.Run(ctx, o, nil)
	if err != nil {
		return nil, "", err
	}
	cmdline := "hotswap bench " + strings.Join(args, " ")
	var changed []string
	if sc.policy != "" {
		changed = append(changed, "scheduling.policy "+sc.policy+", max_wait 10s")
	}
	if sc.limitRAM != "" {
		changed = append(changed, "memory.limit_ram "+sc.limitRAM)
	}
	if sc.parallel > 0 {
		changed = append(changed, fmt.Sprintf("chat-small's parallel %d", sc.parallel))
	}
	if changed != nil {
		cmdline += "\n# hotswap serving config.yaml with " + strings.Join(changed, ", ")
	}
	return rep, cmdline, nil
}

// variant writes config.yaml with the scenario's settings, and a state
// file of its own so that footprints learned elsewhere do not change it.
func variant(path, dir string, sc scenario) (string, *config.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", nil, err
	}
	section := sectionOf(doc)
	section("memory")["state_file"] = filepath.Join(dir, "state.json")
	if sc.limitRAM != "" {
		section("memory")["limit_ram"] = sc.limitRAM
	}
	if sc.policy != "" {
		section("scheduling")["policy"] = sc.policy
		section("scheduling")["max_wait"] = "10s"
	}
	if sc.parallel > 0 {
		models, _ := doc["models"].(map[string]any)
		m, _ := models["chat-small"].(map[string]any)
		if m == nil {
			return "", nil, fmt.Errorf("%s has no model chat-small", path)
		}
		m["parallel"] = sc.parallel
	}
	section("server")["max_conns_per_ip"] = 1000
	section("server")["max_conns"] = 2000
	doc["log_level"] = "warn"
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", nil, err
	}
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return "", nil, err
	}
	cfg, err := config.Load(file)
	return file, cfg, err
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProcess runs argv with its output in logFile, and waits until
// health answers 200.
func startProcess(ctx context.Context, argv []string, logFile, health string) (stop func(), err error) {
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() //nolint:errcheck
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill() //nolint:errcheck
			<-exited
		}
		log.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stop, nil
			}
		}
		select {
		case <-exited:
			stop()
			return nil, fmt.Errorf("%s exited: %s", argv[0], tail(logFile))
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%s not healthy after 30s: %s", argv[0], tail(logFile))
		}
	}
}

func tail(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, " | ")
}

// warm sends one request, so that the model is loaded before the run.
func warm(base, model string) error {
	body := `{"model":"` + model + `","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("warming %s up: %w", model, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	if resp.StatusCode != 200 {
		return fmt.Errorf("warming %s up: status %d", model, resp.StatusCode)
	}
	return nil
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, line := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
				break
			}
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

// scenarioConfig writes cfgPath's settings, with models, memory.limit_ram
// limitRAM and a state file in dir in place of its own (and no modes),
// to dir/config.yaml, for a scenario run alone; edit, if set, changes
// more, with section giving a top-level section (made if missing).
func scenarioConfig(cfgPath, dir, limitRAM string, models map[string]any, edit func(section func(string) map[string]any)) (string, error) {
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", err
	}
	section := sectionOf(doc)
	section("memory")["state_file"] = filepath.Join(dir, "state.json")
	section("memory")["limit_ram"] = limitRAM
	doc["log_level"] = "warn"
	delete(doc, "modes")
	doc["models"] = models
	if edit != nil {
		edit(section)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "config.yaml")
	return file, os.WriteFile(file, out, 0o644)
}

// serveScenario starts hotswap on cfgFile, its log in dir, and returns its
// base URL once it answers, and how to stop it.
func serveScenario(ctx context.Context, hotswap, cfgFile, dir string) (base string, stop func(), err error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	stop, err = startProcess(ctx, []string{hotswap, "-config", cfgFile, "-listen", addr}, filepath.Join(dir, "hotswap.log"),
		"http://"+addr+"/health")
	if err != nil {
		return "", nil, fmt.Errorf("hotswap: %w", err)
	}
	return "http://" + addr, stop, nil
}

// sectionOf gives doc's top-level sections by name, each made if missing.
func sectionOf(doc map[string]any) func(string) map[string]any {
	return func(name string) map[string]any {
		m, _ := doc[name].(map[string]any)
		if m == nil {
			m = map[string]any{}
			doc[name] = m
		}
		return m
	}
}
