package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// The setup: what hotswap serves in the soak, and how it is run.

const (
	// stopTimeout is the configuration's stop_timeout: SIGTERM, then
	// SIGKILL after this (the stubborn backend always needs the SIGKILL).
	stopTimeout = 2 * time.Second
	// limitRAM is memory.limit_ram: well below what the models need
	// together (about 710 MiB), so that only two or three fit at once.
	limitRAM = 400 << 20
	// overhead is what a mock may take beyond its -hold: its Go runtime,
	// binary and buffers. Measured (VmRSS) at about 8 MiB idle, and at
	// most 9 MiB under the soak's load (the footprints hotswap learned in
	// a 10-minute soak); each model declares hold + overhead, so that the
	// planning, which trusts declared needs until it has measured more,
	// keeps the real RSS under the limit, with room to spare.
	overhead = 40 << 20
)

// model is one configured model and the mock's habits.
type model struct {
	id     string
	flags  string  // the mock's flags beyond -port and -model
	hold   int64   // bytes the mock allocates and touches (-hold)
	extra  string  // more of its configuration, YAML flow-map entries
	weight float64 // its share of the clients' requests
}

// models are the soak's models, each with one bad habit. gen (the
// generation of the configuration file, bumped by every reload) varies a
// few settings, one of which (closer's cmd) restarts its backend.
func models(gen int) []model {
	return []model{
		{id: "slow", flags: "-stream-interval 150ms -tokens 10", hold: 64 << 20, weight: 3,
			extra: fmt.Sprintf("parallel: %d", 2+gen%3)},
		{id: "crashy", flags: "-crash-after 3", hold: 64 << 20, weight: 2, extra: "parallel: 2"},
		{id: "stubborn", flags: "-ignore-sigterm", hold: 96 << 20, weight: 2, extra: "parallel: 2"},
		{id: "closer", flags: fmt.Sprintf("-close-after-stream -idle-timeout 5s -tokens %d", 8+gen%2), hold: 64 << 20, weight: 3,
			extra: "parallel: 4"},
		{id: "sloth", flags: "-startup 1s", hold: 128 << 20, weight: 2, extra: "parallel: 2"},
		// Small, and seldom asked for, so that a swap seldom needs its
		// memory and its ttl expires.
		{id: "brief", hold: 16 << 20, weight: 0.2, extra: fmt.Sprintf("parallel: 2, ttl: %ds", 1+gen%2)},
		// Never healthy, silent: its start fails after its health_timeout.
		{id: "broken", flags: "-hang", weight: 0.3, extra: "health_timeout: 3s"},
		// Exits 2 at once, as a backend given a flag it does not know.
		{id: "badflag", flags: "-no-such-flag", weight: 0.3},
	}
}

// modes are the configuration's modes.
var modes = map[string][]string{
	"chat":   {"slow", "closer"},
	"heavy":  {"stubborn", "sloth"},
	"broken": {"crashy", "broken"},
}

// configText is the configuration file of generation gen.
func configText(mock string, gen int, sab sabotage) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# hotswap's soak (soak/soak_test.go), generation %d
ports: 27000-27999
stop_timeout: %v
health_timeout: 5s
log_level: info
server: {shutdown_grace: 3s}
memory: {limit_ram: %dMiB, cooldown_max: 5s}
scheduling: {max_wait: 1s, queue_timeout: 20s}
models:
`, gen, stopTimeout, limitRAM>>20)
	for _, m := range models(gen) {
		need := (m.hold + overhead) >> 20
		if m.hold == 0 {
			need = overhead >> 21 // holds nothing: 20 MiB
		}
		if sab["memory"] {
			need = 8 // less than any mock takes
		}
		fmt.Fprintf(&b, "  %s: {cmd: %q, memory: {ram: %dMiB}", m.id,
			strings.TrimSpace(fmt.Sprintf("%s -port ${PORT} -model ${MODEL} -hold %dMiB %s", mock, m.hold>>20, m.flags)), need)
		if m.extra != "" {
			fmt.Fprintf(&b, ", %s", m.extra)
		}
		b.WriteString("}\n")
	}
	b.WriteString("modes:\n")
	for _, name := range []string{"chat", "heavy", "broken"} {
		fmt.Fprintf(&b, "  %s: [%s]\n", name, strings.Join(modes[name], ", "))
	}
	return b.String()
}

// writeConfig writes the configuration of generation gen to path, whole
// (renamed into place), so that a reload never reads half a file.
func writeConfig(path, mock string, gen int, sab sabotage) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(configText(mock, gen, sab)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// binaries are the hotswap and mock backend builds. Under go test -race,
// hotswap has the race detector too (its log is checked for races); the
// mock never has.
type binaries struct{ hotswap, mock string }

func build(t *testing.T) binaries {
	t.Helper()
	hs, mock, err := mocktest.BuildPair(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return binaries{hs, mock}
}

// hotswap is one run of the hotswap binary.
type hotswap struct {
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:PORT
	pprof  string // http://127.0.0.1:PORT of -pprof
	log    *logWatch
	exited chan struct{} // closed once it has exited
	err    error         // how it exited, once exited is closed
}

var (
	listeningRe = regexp.MustCompile(`hotswap listening\s+\{"addr": "([^"]+)"`)
	profilerRe  = regexp.MustCompile(`profiler listening\s+\{"addr": "([^"]+)"`)
)

// launch starts hotswap on config, with its state (learned footprints,
// the remembered mode) under stateHome, and returns once it listens. Its
// whole log goes to logFile too.
func launch(t *testing.T, exe, config, stateHome, logFile string) *hotswap {
	t.Helper()
	full, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-config", config, "-listen", "127.0.0.1:0", "-pprof", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+stateHome)
	// A pipe of our own, not StderrPipe: Wait must not wait for the log
	// to reach EOF, which a guard process holding stderr would delay.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	h := &hotswap{cmd: cmd, log: newLogWatch(), exited: make(chan struct{})}
	go h.log.read(r, full)
	go func() {
		h.err = cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		h.kill()
		if h.log.races() > 0 {
			t.Errorf("hotswap had a data race:\n%s", h.log.raceReport())
		}
	})
	deadline := time.After(30 * time.Second)
	for h.url == "" || h.pprof == "" {
		select {
		case a := <-h.log.listen:
			h.url = "http://" + a
		case a := <-h.log.profiler:
			h.pprof = "http://" + a
		case <-h.exited:
			t.Fatalf("hotswap exited at start (%v):\n%s", h.err, h.log.tailText(40))
		case <-deadline:
			t.Fatalf("hotswap did not say where it listens:\n%s", h.log.tailText(40))
		}
	}
	return h
}

// kill ends hotswap with SIGKILL, if it still runs, and waits for it.
func (h *hotswap) kill() {
	select {
	case <-h.exited:
	default:
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
}

// stop sends SIGTERM and waits up to timeout for hotswap to exit.
func (h *hotswap) stop(timeout time.Duration) error {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
		return h.err
	case <-time.After(timeout):
		return fmt.Errorf("hotswap did not exit within %v of SIGTERM", timeout)
	}
}

// rss is hotswap's resident memory now.
func (h *hotswap) rss() int64 { return procRSS(h.cmd.Process.Pid) }

// goroutines is hotswap's goroutine count, from its profiler: all of
// them, and those that are hotswap's own. Not its own: fasthttp's idle
// workers, one for each connection it served, kept for up to 20 s after
// the connection closed (MaxIdleWorkerDuration 10 s, cleaned every 10 s;
// a worker serving a connection, serveConn on its stack, counts); the
// process-wide cleaners fasthttp starts on first use (those that
// mocktest.IgnoreFasthttp lists for the project's leak checks); and the
// profiler's handler answering this very request.
func (h *hotswap) goroutines(c *http.Client) (all, own int, err error) {
	status, body, err := call(context.Background(), c, "GET", h.pprof+"/debug/pprof/goroutine?debug=1", "")
	if err != nil {
		return 0, 0, err
	}
	if status != 200 {
		return 0, 0, fmt.Errorf("goroutine profile: status %d", status)
	}
	// "goroutine profile: total N", then records: "N @ pc...", then
	// their frames ("#\t..."), a blank line between records.
	records := strings.Split(string(body), "\n\n")
	first, _, _ := strings.Cut(records[0], "\n")
	all, err = strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if err != nil {
		return 0, 0, fmt.Errorf("goroutine profile: %q", first)
	}
	own = all
	for _, r := range records {
		if notOwn(r) {
			head := r
			if i := strings.Index(r, " @ "); i >= 0 {
				head = r[:i]
			}
			head = head[strings.LastIndexByte(head, '\n')+1:]
			if n, err := strconv.Atoi(head); err == nil {
				own -= n
			}
		}
	}
	return all, own, nil
}

// notOwn reports whether a goroutine profile record is one that
// goroutines does not count as hotswap's own.
func notOwn(record string) bool {
	if strings.Contains(record, "fasthttp.(*workerPool).workerFunc") {
		return !strings.Contains(record, "serveConn")
	}
	for _, f := range []string{
		"fasthttp.(*HostClient).connsCleaner",
		"fasthttp.(*Client).mCleaner",
		"fasthttp.(*TCPDialer).tcpAddrsClean",
		"fasthttp.(*workerPool).Start.func2",
		"fasthttp.updateServerDate.func1",
		"net/http/pprof.handler.ServeHTTP",
	} {
		if strings.Contains(record, f) {
			return true
		}
	}
	return false
}

// logWatch reads hotswap's log as it is written and keeps what the soak
// checks: data races, panics, crashes of backends, stops that needed a
// SIGKILL; and the last lines, for reports.
type logWatch struct {
	listen, profiler chan string

	mu        sync.Mutex
	tail      []string // ring
	next      int
	lines     int
	raceN     int
	race      []string // the first race report
	panics    []string
	crashes   []time.Time    // backends that exited while serving
	slowStops map[string]int // by model: stops that took stop_timeout or more
	failed    map[string]int // by model: failed starts
}

const tailLines = 300

func newLogWatch() *logWatch {
	return &logWatch{listen: make(chan string, 1), profiler: make(chan string, 1),
		slowStops: map[string]int{}, failed: map[string]int{}}
}

// read reads the log to its end, copying it to full.
func (w *logWatch) read(r io.ReadCloser, full *os.File) {
	defer r.Close()
	defer full.Close()
	out := bufio.NewWriter(full)
	defer out.Flush()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		w.line(sc.Text())
		out.WriteString(sc.Text())
		out.WriteByte('\n')
	}
}

func (w *logWatch) line(s string) {
	if m := listeningRe.FindStringSubmatch(s); m != nil {
		w.listen <- m[1]
	}
	if m := profilerRe.FindStringSubmatch(s); m != nil {
		w.profiler <- m[1]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines++
	if len(w.tail) < tailLines {
		w.tail = append(w.tail, s)
	} else {
		w.tail[w.next] = s
		w.next = (w.next + 1) % tailLines
	}
	switch {
	case strings.Contains(s, "WARNING: DATA RACE"):
		w.raceN++
		if w.raceN == 1 {
			w.race = append(w.race, s)
		}
	case w.raceN == 1 && len(w.race) < 120:
		w.race = append(w.race, s)
	}
	if strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") {
		w.panics = append(w.panics, s)
	}
	switch {
	case strings.Contains(s, "\tbackend exited unexpectedly\t"):
		w.crashes = append(w.crashes, time.Now())
	case strings.Contains(s, "\tbackend stopped\t"):
		var f struct{ Model, Took string }
		if json.Unmarshal([]byte(s[strings.LastIndexByte(s, '\t')+1:]), &f) == nil {
			if took, err := time.ParseDuration(f.Took); err == nil && took >= stopTimeout {
				w.slowStops[f.Model]++
			}
		}
	case strings.Contains(s, "\tbackend failed to start\t"):
		var f struct{ Model string }
		if json.Unmarshal([]byte(s[strings.LastIndexByte(s, '\t')+1:]), &f) == nil {
			w.failed[f.Model]++
		}
	}
}

func (w *logWatch) races() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.raceN
}

func (w *logWatch) raceReport() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d race report(s); the first:\n%s", w.raceN, strings.Join(w.race, "\n"))
}

// tailText is the last n lines of the log.
func (w *logWatch) tailText(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	all := append(append([]string(nil), w.tail[w.next:]...), w.tail[:w.next]...)
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return strings.Join(all, "\n")
}

func (w *logWatch) get(f func(w *logWatch) int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return f(w)
}

// firstCrash is when a backend first exited while serving (zero: never).
func (w *logWatch) firstCrash() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.crashes) == 0 {
		return time.Time{}
	}
	return w.crashes[0]
}

// call does one HTTP request and reads its whole answer.
func call(ctx context.Context, c *http.Client, method, url, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// openAIError checks that body is OpenAI's error shape and returns its
// code (or its type, when it has no code).
func openAIError(body []byte) (string, error) {
	var e struct {
		Error *struct {
			Message *string `json:"message"`
			Type    string  `json:"type"`
			Code    any     `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return "", fmt.Errorf("not JSON: %v", err)
	}
	if e.Error == nil || e.Error.Message == nil {
		return "", errors.New(`no "error" object with a "message"`)
	}
	if s, ok := e.Error.Code.(string); ok && s != "" {
		return s, nil
	}
	if e.Error.Type != "" {
		return e.Error.Type, nil
	}
	return "error", nil
}

// metrics is one scrape of /metrics: each series' value by its name and
// labels as written.
type metrics map[string]float64

func scrape(c *http.Client, url string) (metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := call(ctx, c, "GET", url+"/metrics", "")
	if err != nil {
		return nil, err
	}
	if status != 200 {
		return nil, fmt.Errorf("/metrics: status %d", status)
	}
	m := metrics{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, nil
}

// sum adds up the series of name that have every label given (`k="v"`).
func (m metrics) sum(name string, labels ...string) float64 {
	var n float64
series:
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(k, l) {
				continue series
			}
		}
		n += v
	}
	return n
}

// procRSS is a process's VmRSS in bytes (0 once it has gone).
func procRSS(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	_, rss, _ := statusFields(b)
	return rss
}

// statusFields reads /proc/PID/status: whether it is a zombie, and VmRSS.
func statusFields(b []byte) (zombie bool, rss int64, ok bool) {
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "State:"):
			zombie = strings.Contains(line, "Z (zombie)")
			ok = true
		case strings.HasPrefix(line, "VmRSS:"):
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				rss = kb << 10
			}
		}
	}
	return zombie, rss, ok
}
