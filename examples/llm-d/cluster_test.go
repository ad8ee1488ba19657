// The cluster test: two hotswap hosts on loopback behind the real llm-d
// endpoint picker (EPP), built from its source (HOTSWAP_EPP_SRC), in
// file-discovery mode with this directory's epp-config.yaml, and a small
// stand-in for Envoy's part (internal/extproc). make test-cluster runs it.
package llmd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hotswap/hotswap/internal/extproc"
	"github.com/hotswap/hotswap/internal/mocktest"
)

// hostConfig is each host's: mock models a, b and c, with memory for one
// of them (limit_ram); the picker reads /metrics/endpoint without a key.
const hostConfig = `
ports: PORTS
stop_timeout: 2s
api_keys: [user-key]
memory: {limit_ram: 100MiB, reserve_ram: 0}
endpoint_picker: {open: true, leave: 3s}
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -startup 200ms -tokens 25 -stream-interval 40ms", memory: {ram: 80MiB}}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL} -startup 200ms", memory: {ram: 80MiB}}
  c: {cmd: "MOCK -port ${PORT} -model ${MODEL} -startup 200ms", memory: {ram: 80MiB}}
`

func TestCluster(t *testing.T) {
	epp := eppBinary(t)
	c := newCluster(t, epp, "epp-config.yaml", hostConfig, 2)
	h1, h2 := c.hosts[0], c.hosts[1]
	user := c.client()

	// a, warmed on host 1 (directly), then seen by the picker: requests
	// for a go to host 1, and nothing starts anywhere.
	if code, body, _ := h1.post("a", false); code != 200 {
		t.Fatalf("warming a on host 1: %d %s", code, body)
	}
	c.seen()
	starts := c.starts()
	for i := 0; i < 5; i++ {
		if ep := user.chat("a"); ep != h1.addr {
			t.Errorf("request %d for a, loaded on host 1 (%s), went to %s", i, h1.addr, ep)
		}
	}
	if now := c.starts(); now != starts {
		t.Errorf("requests for a loaded model started backends: starts %v, then %v", starts, now)
	}

	// b is loaded nowhere: host 1 is full, host 2 has room.
	if ep := user.chat("b"); ep != h2.addr {
		t.Errorf("b, loaded nowhere, went to %s; host 2 (%s) has room, host 1 is full", ep, h2.addr)
	}
	if got := c.starts(); got[0] != starts[0] || got[1] != starts[1]+1 {
		t.Errorf("b: starts %v, then %v; want one start, on host 2", starts, got)
	}
	c.seen()

	// Streaming, through the picker and back: the chunks come as the
	// backend writes them (25 of them, 40ms apart), not at the end.
	ep, first, last, events := user.stream("a")
	if ep != h1.addr {
		t.Errorf("a stream went to %s, want host 1 (%s)", ep, h1.addr)
	}
	if events < 25 || last.Sub(first) < 500*time.Millisecond {
		t.Errorf("stream: %d events over %v; want 25 or more, spread over about a second", events, last.Sub(first))
	}

	// Host 1 leaves the endpoints file while requests for a come: they
	// move to host 2 (which starts a), and none is lost.
	load := c.load("a")
	c.writeEndpoints(h2)
	if !mocktest.Eventually(30*time.Second, func() bool { return load.last() == h2.addr }) {
		t.Fatalf("with host 1 out of the endpoints file, requests for a still go to %s", load.last())
	}
	n := load.count()
	if !mocktest.Eventually(20*time.Second, func() bool { return load.count() >= n+20 }) {
		t.Errorf("requests stalled after host 1 left the endpoints file")
	}
	load.stop(t, "host 1 taken out of the endpoints file")

	// Both again, a unloaded from host 1; then host 2 is stopped
	// (SIGTERM: it leaves for 3s, saying so) while requests for a come:
	// they move to host 1, none lost.
	if code, body := h1.admin("POST", "/admin/models/a/unload"); code != 200 {
		t.Fatalf("unloading a from host 1: %d %s", code, body)
	}
	c.writeEndpoints(h1, h2)
	c.seen()
	if ep := user.chat("a"); ep != h2.addr {
		t.Errorf("a, loaded on host 2 only now, went to %s", ep)
	}
	load = c.load("a")
	h2.cmd.Process.Signal(syscall.SIGTERM)
	if !mocktest.Eventually(30*time.Second, func() bool { return load.last() == h1.addr }) {
		t.Fatalf("with host 2 stopping, requests for a still go to %s", load.last())
	}
	if err := h2.wait(20 * time.Second); err != nil {
		t.Errorf("host 2's exit: %v", err)
	}
	// On past host 2's exit: the picker still lists it, and must not pick it.
	n = load.count()
	if !mocktest.Eventually(20*time.Second, func() bool { return load.count() >= n+10 }) {
		t.Errorf("requests stalled after host 2 stopped")
	}
	load.stop(t, "host 2 stopped")
}

// eppBinary is the endpoint picker built from HOTSWAP_EPP_SRC, cached
// under the user's cache directory by the source's commit: built once per
// machine and commit.
func eppBinary(t *testing.T) string {
	t.Helper()
	src := os.Getenv("HOTSWAP_EPP_SRC")
	if src == "" {
		t.Skip("no endpoint picker: set HOTSWAP_EPP_SRC to llm-d-router's source (make test-cluster uses ../shared/llm-d-router)")
	}
	commit, err := sourceCommit(src)
	if err != nil {
		t.Fatalf("HOTSWAP_EPP_SRC=%s: %v", src, err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "hotswap", "epp", commit, "epp")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := bin + ".building." + strconv.Itoa(os.Getpid())
	t.Logf("building the endpoint picker from %s (commit %s) into %s; once per machine", src, commit, bin)
	began := time.Now()
	cmd := exec.Command("go", "build", "-o", tmp, "./cmd/epp")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("building the endpoint picker: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the endpoint picker in %v", time.Since(began).Round(time.Second))
	return bin
}

var commitRE = regexp.MustCompile(`\b[0-9a-f]{40}\b`)

// sourceCommit is the commit of llm-d-router's source: git's, or the one
// SOURCE.txt names (a copy without .git).
func sourceCommit(src string) (string, error) {
	if out, err := exec.Command("git", "-C", src, "rev-parse", "HEAD").Output(); err == nil {
		if c := strings.TrimSpace(string(out)); commitRE.MatchString(c) {
			return c, nil
		}
	}
	b, err := os.ReadFile(filepath.Join(src, "SOURCE.txt"))
	if err != nil {
		return "", fmt.Errorf("neither a git checkout nor a SOURCE.txt naming its commit: %w", err)
	}
	if c := commitRE.FindString(string(b)); c != "" {
		return c, nil
	}
	return "", fmt.Errorf("%s names no commit", filepath.Join(src, "SOURCE.txt"))
}

// cluster is hotswap hosts, the picker and the gateway in front of it.
type cluster struct {
	t         *testing.T
	hosts     []*host
	endpoints string // the picker's endpoints file
	gw        *extproc.Gateway
	url       string // the gateway's
}

type host struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	addr string // 127.0.0.1:port
	logs *mocktest.Output
	done chan error
}

var (
	buildOnce        sync.Once
	hotswapBin, mock string
	buildErr         error
)

// newCluster starts n hosts with hostCfg, the picker with eppConfig (this
// directory's file, its endpoints path replaced) and the gateway, and
// returns once the picker serves and has read every host.
func newCluster(t *testing.T, epp, eppConfig, hostCfg string, n int) *cluster {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hotswap-cluster-test")
		if err != nil {
			buildErr = err
			return
		}
		hotswapBin, mock, buildErr = mocktest.BuildPair(dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	t.Cleanup(func() {
		if left := mocktest.Leftovers(mock, 5*time.Second); len(left) > 0 {
			t.Errorf("mock backends left running: %v", left)
		}
	})
	dir := t.TempDir()
	c := &cluster{t: t, endpoints: filepath.Join(dir, "endpoints.yaml")}
	for i := range n {
		cfg := strings.ReplaceAll(hostCfg, "MOCK", mock)
		first := 23000 + 200*i
		cfg = strings.ReplaceAll(cfg, "PORTS", fmt.Sprintf("%d-%d", first, first+199))
		c.hosts = append(c.hosts, startHost(t, fmt.Sprintf("host-%d", i+1), filepath.Join(dir, fmt.Sprintf("host%d", i+1)), cfg))
	}
	c.writeEndpoints(c.hosts...)

	text, err := os.ReadFile(eppConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfgText := strings.Replace(string(text), "/etc/epp/endpoints.yaml", c.endpoints, 1)
	if cfgText == string(text) {
		t.Fatalf("%s does not read /etc/epp/endpoints.yaml", eppConfig)
	}
	cfgPath := filepath.Join(dir, "epp-config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	grpcPort, healthPort, metricsPort := freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(epp, "--config-file", cfgPath, "--pool-name", "hotswap", "--pool-namespace", "cluster-test",
		"--grpc-port", strconv.Itoa(grpcPort), "--grpc-health-port", strconv.Itoa(healthPort),
		"--metrics-port", strconv.Itoa(metricsPort), "--secure-serving=false", "--tracing=false",
		"--enable-pprof=false", "--metrics-endpoint-auth=false", "--allow-experimental-plugins")
	eppLog := &mocktest.Output{}
	cmd.Stdout, cmd.Stderr = eppLog, eppLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("the endpoint picker's log:\n%s", eppLog.Tail(200))
		}
	})
	healthy := mocktest.Eventually(60*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		return serving("127.0.0.1:" + strconv.Itoa(healthPort))
	})
	select {
	case err := <-exited:
		t.Fatalf("the endpoint picker exited: %v\n%s", err, eppLog.Tail(100))
	default:
	}
	if !healthy {
		t.Fatalf("the endpoint picker is not serving:\n%s", eppLog.Tail(100))
	}
	gw, err := extproc.Dial("127.0.0.1:" + strconv.Itoa(grpcPort))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() {
		srv.Close()
		gw.Close()
	})
	c.gw, c.url = gw, "http://"+ln.Addr().String()
	c.seen()
	return c
}

// startHost runs a hotswap with cfg, its state under dir.
func startHost(t *testing.T, name, dir, cfg string) *host {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hotswapBin, "-config", path, "-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, name: name, cmd: cmd, logs: &mocktest.Output{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			h.logs.Write([]byte(sc.Text() + "\n")) //nolint:errcheck
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	go func() {
		<-scanned
		h.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		h.wait(10 * time.Second) //nolint:errcheck
		if strings.Contains(h.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("%s had a data race:\n%s", name, h.logs.String())
		}
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, h.logs.Tail(60))
		}
	})
	select {
	case h.addr = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not say where it listens:\n%s", name, h.logs.String())
	}
	return h
}

var listening = regexp.MustCompile(`hotswap listening\s+\{"addr": "([^"]+)"`)

// wait waits for the host's exit.
func (h *host) wait(d time.Duration) error {
	select {
	case err := <-h.done:
		h.done <- err // for a later wait
		return err
	case <-time.After(d):
		return fmt.Errorf("%s did not exit within %v", h.name, d)
	}
}

// exited reports whether the host has exited.
func (h *host) exited() bool {
	select {
	case err := <-h.done:
		h.done <- err
		return true
	default:
		return false
	}
}

// admin sends an admin request to the host.
func (h *host) admin(method, path string) (int, string) {
	req, _ := http.NewRequest(method, "http://"+h.addr+path, nil)
	req.Header.Set("Authorization", "Bearer user-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	bufio.NewReader(resp.Body).WriteTo(b) //nolint:errcheck
	return resp.StatusCode, b.String()
}

// post sends a chat for model straight to the host.
func (h *host) post(model string, stream bool) (int, string, http.Header) {
	return do(h.t, "http://"+h.addr, model, stream)
}

// metric sums the series of name on the host's /metrics whose labels
// contain want.
func (h *host) metric(name, want string) float64 {
	req, _ := http.NewRequest("GET", "http://"+h.addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer user-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1 // a host that stopped
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, want) {
			continue
		}
		if f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += f
		}
	}
	return sum
}

// starts is the backend starts on each host so far.
func (c *cluster) starts() [2]float64 {
	var s [2]float64
	for i := 0; i < 2 && i < len(c.hosts); i++ {
		s[i] = c.hosts[i].metric("hotswap_backend_starts_total", "")
	}
	return s
}

// seen returns once the picker has read every running host twice since
// now: what the hosts say now is what it decides on.
func (c *cluster) seen() {
	c.t.Helper()
	scrapes := func(h *host) float64 { return h.metric("hotswap_requests_total", `endpoint="metrics_endpoint"`) }
	for _, h := range c.hosts {
		if h.exited() {
			continue
		}
		from := scrapes(h)
		if !mocktest.Eventually(20*time.Second, func() bool { return scrapes(h) >= from+2 }) {
			c.t.Fatalf("the endpoint picker does not read %s's /metrics/endpoint", h.name)
		}
	}
}

// writeEndpoints replaces the picker's endpoints file with hosts (as a
// user would: a new file renamed into place).
func (c *cluster) writeEndpoints(hosts ...*host) {
	c.t.Helper()
	var b strings.Builder
	b.WriteString("endpoints:\n")
	for _, h := range hosts {
		ip, port, _ := net.SplitHostPort(h.addr)
		fmt.Fprintf(&b, "  - name: %s\n    address: %q\n    port: %q\n    labels: {llm-d.ai/engine-type: hotswap}\n", h.name, ip, port)
	}
	tmp := c.endpoints + ".new"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, c.endpoints); err != nil {
		c.t.Fatal(err)
	}
}

// gatewayClient sends requests through the gateway.
type gatewayClient struct {
	t   *testing.T
	url string
}

func (c *cluster) client() gatewayClient { return gatewayClient{c.t, c.url} }

// chat sends a chat for model, which must be answered 200, and returns
// the endpoint that answered.
func (g gatewayClient) chat(model string) string {
	g.t.Helper()
	code, body, h := do(g.t, g.url, model, false)
	if code != 200 {
		g.t.Fatalf("chat %s through the picker: %d %s", model, code, body)
	}
	return h.Get(extproc.EndpointHeader)
}

// stream sends a streamed chat for model and returns where it went, when
// its first and last events came, and how many there were.
func (g gatewayClient) stream(model string) (endpoint string, first, last time.Time, events int) {
	g.t.Helper()
	req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(
		`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer user-key")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		g.t.Fatalf("stream %s: %d %s", model, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if first.IsZero() {
			first = time.Now()
		}
		last = time.Now()
		events++
		if data == "[DONE]" {
			done = true
		} else if !json.Valid([]byte(data)) {
			g.t.Errorf("stream %s: an event is not JSON: %q", model, data)
		}
	}
	if err := sc.Err(); err != nil || !done {
		g.t.Errorf("stream %s ended without [DONE]: %v", model, err)
	}
	return resp.Header.Get(extproc.EndpointHeader), first, last, events
}

func do(t *testing.T, url, model string, stream bool) (int, string, http.Header) {
	t.Helper()
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	if stream {
		body = `{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	}
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer user-key")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	_, err = bufio.NewReader(resp.Body).WriteTo(b)
	if err != nil {
		return 0, err.Error(), nil
	}
	return resp.StatusCode, b.String(), resp.Header
}

// load sends requests for model through the gateway, two at a time, until
// stopped; every one must be answered 200.
type load struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	n       int
	lastEP  string
	failed  []string
	started time.Time
}

func (c *cluster) load(model string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, started: time.Now()}
	for range 2 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				code, body, h := do(c.t, c.url, model, false)
				l.mu.Lock()
				l.n++
				if code == 200 {
					l.lastEP = h.Get(extproc.EndpointHeader)
				} else {
					l.failed = append(l.failed, fmt.Sprintf("%v: %d %s", time.Since(l.started).Round(time.Millisecond), code, body))
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastEP
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// stop ends the load and fails t if any request was lost.
func (l *load) stop(t *testing.T, during string) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	if len(l.failed) > 0 {
		t.Errorf("%s: %d of %d requests lost:\n%s", during, len(l.failed), l.n, strings.Join(l.failed, "\n"))
	} else {
		t.Logf("%s: %d requests, none lost", during, l.n)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serving reports whether the gRPC health service at addr says SERVING.
func serving(addr string) bool {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// benchHosts is each host of the benchmark: three models, memory for one,
// four requests at a time per backend, a start that takes half a second.
const benchHosts = `
ports: PORTS
stop_timeout: 2s
api_keys: [user-key]
memory: {limit_ram: 100MiB, reserve_ram: 0}
endpoint_picker: {open: true, leave: 3s}
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL} -startup 500ms -tokens 16", memory: {ram: 80MiB}, parallel: 4}
  b: {cmd: "MOCK -port ${PORT} -model ${MODEL} -startup 500ms -tokens 16", memory: {ram: 80MiB}, parallel: 4}
  c: {cmd: "MOCK -port ${PORT} -model ${MODEL} -startup 500ms -tokens 16", memory: {ram: 80MiB}, parallel: 4}
`

// randomConfig is the baseline: the same hosts and data layer, and the
// EPP's random picker alone (it has no round-robin one).
const randomConfig = `
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
  - name: hotswap-hosts
    type: file-discovery
    parameters: {path: /etc/epp/endpoints.yaml, watchFile: true}
  - name: hotswap-metrics
    type: metrics-data-source
    parameters: {path: /metrics/endpoint, interval: 1s}
  - name: hotswap-extractor
    type: core-metrics-extractor
    parameters:
      engineConfigs:
        - name: hotswap
          queuedRequestsSpec: hotswap_endpoint_requests_waiting
          runningRequestsSpec: hotswap_endpoint_requests_running
          kvUsageSpec: hotswap_endpoint_memory_usage_ratio
          loraSpec: hotswap_endpoint_lora_requests_info
  - name: picker
    type: random-picker
  - name: profile-handler
    type: single-profile-handler
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: picker
dataLayer:
  discovery: {pluginRef: hotswap-hosts}
  sources:
    - pluginRef: hotswap-metrics
      extractors: [{pluginRef: hotswap-extractor}]
`

// benchArgs is the workload: closed loop, each request drawing its model
// (a is asked for most), the same seed for both pickers.
var benchArgs = []string{"-models", "a:3,b:2,c:1", "-mix", "-users", "6", "-requests", "300", "-max-tokens", "16", "-seed", "7"}

// TestClusterBench is BENCHMARKS.md's "More than one machine": the same
// workload through the endpoint picker with epp-config.yaml, then with the
// random picker, on fresh hosts each time; backend starts and evictions
// are read from the hosts. make bench-cluster runs it.
func TestClusterBench(t *testing.T) {
	loadgen := os.Getenv("HOTSWAP_CLUSTER_BENCH")
	if loadgen == "" {
		t.Skip("a benchmark: make bench-cluster runs it (HOTSWAP_CLUSTER_BENCH=path to hotswap-bench)")
	}
	epp := eppBinary(t)
	random := filepath.Join(t.TempDir(), "random.yaml")
	if err := os.WriteFile(random, []byte(randomConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	type result struct {
		name                   string
		starts, evictions      float64
		sent, errors           int
		p50, p99, elapsed, rps float64
		perHost                [2]float64
	}
	var results []result
	for _, run := range []struct {
		name, config string
		stopHost2    bool // SIGTERM host 2 five seconds in: it leaves, the run goes on
	}{
		{"EPP (epp-config.yaml)", "epp-config.yaml", false},
		{"random picker", random, false},
		{"EPP, host 2 stopped 5 s in", "epp-config.yaml", true},
	} {
		t.Run(run.name, func(t *testing.T) {
			c := newCluster(t, epp, run.config, benchHosts, 2)
			// Each host's starts and evictions so far; a host that is
			// stopped keeps what was read of it last.
			var mu sync.Mutex
			var seen [2][2]float64
			read := func() [2][2]float64 {
				mu.Lock()
				defer mu.Unlock()
				for i, h := range c.hosts {
					if h.exited() {
						continue
					}
					st, ev := h.metric("hotswap_backend_starts_total", ""), h.metric("hotswap_evictions_total", "")
					if st >= 0 && ev >= 0 {
						seen[i] = [2]float64{st, ev}
					}
				}
				return seen
			}
			before := read()
			out := filepath.Join(t.TempDir(), "bench.json")
			args := append([]string{"-target", c.url, "-api-key", "user-key", "-json", out}, benchArgs...)
			cmd := exec.Command(loadgen, args...)
			if run.stopHost2 {
				stop := time.AfterFunc(5*time.Second, func() {
					read()
					c.hosts[1].cmd.Process.Signal(syscall.SIGTERM)
				})
				defer stop.Stop()
			}
			b, err := cmd.CombinedOutput()
			t.Logf("hotswap bench %s\n%s", strings.Join(args, " "), b)
			if err != nil {
				t.Fatalf("hotswap bench: %v", err)
			}
			after := read()
			var rep struct {
				Targets []struct {
					ElapsedS float64 `json:"elapsed_s"`
					Total    struct {
						Sent      int                        `json:"sent"`
						Errors    int                        `json:"errors"`
						RPS       float64                    `json:"requests_per_s"`
						LatencyMs struct{ P50, P99 float64 } `json:"latency_ms"`
					} `json:"total"`
				} `json:"targets"`
			}
			raw, err := os.ReadFile(out)
			if err == nil {
				err = json.Unmarshal(raw, &rep)
			}
			if err != nil || len(rep.Targets) != 1 {
				t.Fatalf("reading %s: %v", out, err)
			}
			tr := rep.Targets[0]
			h1, h2 := after[0][0]-before[0][0], after[1][0]-before[1][0]
			r := result{name: run.name, starts: h1 + h2, evictions: after[0][1] - before[0][1] + after[1][1] - before[1][1],
				sent: tr.Total.Sent, errors: tr.Total.Errors, p50: tr.Total.LatencyMs.P50, p99: tr.Total.LatencyMs.P99,
				elapsed: tr.ElapsedS, rps: tr.Total.RPS, perHost: [2]float64{h1, h2}}
			if run.stopHost2 && r.errors > 0 {
				t.Errorf("%d requests lost as host 2 left", r.errors)
			}
			results = append(results, r)
		})
	}
	var b strings.Builder
	b.WriteString("| picker | requests | errors | backend starts (host 1 + host 2) | evictions | p50 | p99 | requests/s |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f (%.0f + %.0f) | %.0f | %.0f ms | %.0f ms | %.1f |\n",
			r.name, r.sent, r.errors, r.starts, r.perHost[0], r.perHost[1], r.evictions, r.p50, r.p99, r.rps)
	}
	t.Logf("\n%s", b.String())
	if len(results) >= 2 && results[1].starts > 0 {
		t.Logf("the endpoint picker made %.0f%% fewer backend starts than the random picker",
			100*(1-results[0].starts/results[1].starts))
	}
}
