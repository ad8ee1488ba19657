package ui_test

// The status page, driven in a real browser (the system's Chromium, via
// chromedp) against the hotswap binary and mock backends: what an operator
// sees and presses. Without a browser these tests skip, and `make test`
// says so in one line.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// Keys of the configurations below.
const (
	adminKey = "ui-admin-key"
	userKey  = "ui-user-key"
)

var (
	browser      string // the browser's path; "" skips
	hotswapExe   string
	mockExe      string
	whyNoBrowser string
)

func TestMain(m *testing.M) {
	browser, whyNoBrowser = findBrowser()
	if browser == "" {
		os.Exit(m.Run()) // each test skips, saying why
	}
	dir, err := os.MkdirTemp("", "hotswap-ui-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hotswapExe, mockExe, err = mocktest.BuildPair(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if left := mocktest.Leftovers(mockExe, 5*time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: mock backends left running: %v\n", left)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// findBrowser looks for Chromium or Chrome: HOTSWAP_BROWSER, then the
// usual names on PATH.
func findBrowser() (path, why string) {
	if p := os.Getenv("HOTSWAP_BROWSER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", "HOTSWAP_BROWSER: " + err.Error()
		}
		return p, ""
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, ""
		}
	}
	return "", "no Chromium or Chrome on PATH (apt-get install chromium, or set HOTSWAP_BROWSER)"
}

func needBrowser(t *testing.T) {
	t.Helper()
	switch {
	case browser != "":
	case os.Getenv("HOTSWAP_REQUIRE_BROWSER") != "":
		t.Fatal("no browser for the browser tests: " + whyNoBrowser)
	default:
		t.Skip("browser tests skipped: " + whyNoBrowser)
	}
}

// hotswap is the binary under test, on a port of its own that stays the
// same across restarts (the page must find it again).
type hotswap struct {
	t      *testing.T
	config string
	state  string
	addr   string
	url    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{}
}

func newHotswap(t *testing.T, config string) *hotswap {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(config, "MOCK", mockExe)), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &hotswap{t: t, config: path, state: dir, addr: addr, url: "http://" + addr}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *hotswap) start() {
	h.t.Helper()
	h.mu.Lock()
	cmd := exec.Command(hotswapExe, "-config", h.config, "-listen", h.addr)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+h.state)
	h.logs = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &h.mu, w: h.logs}, &lockedWriter{mu: &h.mu, w: h.logs}
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		h.t.Fatal(err)
	}
	h.cmd, h.done = cmd, make(chan struct{})
	done := h.done
	go func() { cmd.Wait(); close(done) }()
	h.mu.Unlock()
	ok := mocktest.Eventually(20*time.Second, func() bool {
		r, err := http.Get(h.url + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})
	if !ok {
		h.t.Fatalf("hotswap did not come up:\n%s", h.log())
	}
}

// stop ends hotswap as an operator would (SIGTERM), waiting for it.
func (h *hotswap) stop() {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	if strings.Contains(h.log(), "WARNING: DATA RACE") {
		h.t.Errorf("hotswap had a data race:\n%s", h.log())
	}
}

func (h *hotswap) log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// call sends an API request with key and returns its status.
func (h *hotswap) call(method, path, body, key string) int {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Errorf("%s %s: %v", method, path, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// get decodes the answer to a GET with key into v.
func (h *hotswap) get(path, key string, v any) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != 200 {
		h.t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
}

func (h *hotswap) chat(model string) int {
	return h.call("POST", "/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`, userKey)
}

// page is one browser tab.
type page struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	thrown []string // the page's uncaught exceptions
}

// newPage opens a tab in a browser of its own, started with flags besides
// the usual ones.
func newPage(t *testing.T, width, height int, flags ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.WindowSize(width, height),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-gpu", true),
	)
	opts = append(opts, flags...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	p := &page{t: t, ctx: ctx}
	watched := make(chan struct{})
	t.Cleanup(func() {
		// Whatever else a test checked, the page's script must not have
		// failed anywhere.
		p.mu.Lock()
		for _, e := range p.thrown {
			t.Errorf("the page threw: %s", e)
		}
		p.mu.Unlock()
		cancel()
		cancelAlloc()
		<-watched
	})
	// The first call starts the browser, which lives as long as the
	// context of that call: this one, not one of the timed ones below.
	if err := chromedp.Do(ctx); err != nil {
		close(watched)
		t.Fatalf("starting %s: %v", browser, err)
	}
	thrown := chromedp.Events(ctx, cdpruntime.ExceptionThrown)
	go func() {
		defer close(watched)
		for ev, err := range thrown {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			what := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				what += " " + d.Exception.Description
			}
			p.mu.Lock()
			p.thrown = append(p.thrown, fmt.Sprintf("%s (%s:%d)", what, d.URL, d.LineNumber+1))
			p.mu.Unlock()
		}
	}()
	p.do(chromedp.EmulateViewport(int64(width), int64(height)))
	return p
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

// eval runs a script and returns its value.
func eval[T any](p *page, script string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](script))
	if err != nil {
		p.t.Fatalf("browser: %s: %v", script, err)
	}
	return v
}

// waitFor polls a script until it is true, or fails with what the page
// showed.
func (p *page) waitFor(what, script string, timeout time.Duration) {
	p.t.Helper()
	var err error
	if !mocktest.Eventually(timeout, func() bool {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancel()
		var ok bool
		ok, err = chromedp.Run(ctx, chromedp.Evaluate[bool](script))
		return err == nil && ok
	}) {
		p.t.Fatalf("waited %v for %s (last error: %v); the page said:\n%s", timeout, what, err, p.text())
	}
}

func (p *page) text() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

// signIn opens the page, which sends a browser without the cookie to sign
// in, and signs in with the admin key.
func (p *page) signIn(h *hotswap) {
	p.t.Helper()
	p.do(chromedp.Navigate(h.url + "/ui/"))
	p.waitFor("the sign-in form", `location.pathname === "/ui/login" && !!document.querySelector("#key")`, 10*time.Second)
	p.do(chromedp.SendKeys(chromedp.CSS("#key"), adminKey), chromedp.Submit(chromedp.CSS("#key")))
	p.waitFor("the page, signed in", `location.pathname === "/ui/" && document.body.dataset.loaded === "true"`, 15*time.Second)
}

// state is what the page shows as a model's state.
func state(model string) string {
	return `((document.querySelector('#models tr[data-model="` + model + `"] .state') || {}).textContent || "")`
}

// screenshotEnv names a directory for the page's screenshots (make
// screenshots writes docs/'s); without it they go to a test's temporary
// directory, and are checked all the same.
const screenshotEnv = "HOTSWAP_UI_SCREENSHOTS"

// screenshot saves the whole page as name, a PNG.
func (p *page) screenshot(name string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		p.t.Error("the screenshot is not a PNG")
	}
	dir := os.Getenv(screenshotEnv)
	if dir == "" {
		dir = p.t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// The configuration of the main scenario: alpha and beta do not fit
// together under limit_ram, so that asking for one evicts the other.
const scenario = `
admin_keys: [` + adminKey + `]
api_keys: [` + userKey + `]
ports: 29000-29499
stop_timeout: 5s
memory: {limit_ram: 200MiB, reserve_ram: 0}
scheduling: {max_wait: 200ms}
models:
  alpha:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 2s
    kind: llm
    memory: {ram: 120MiB}
    ttl: 10m
  beta:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 300ms
    kind: llm
    memory: {ram: 120MiB}
  gamma:
    cmd: MOCK -port ${PORT} -model ${MODEL}
    kind: embedding
    memory: {ram: 40MiB}
  broken:
    cmd: MOCK -port ${PORT} -model ${MODEL} -no-such-flag
    memory: {ram: 10MiB}
  huge:
    cmd: MOCK -port ${PORT} -model ${MODEL}
    memory: {ram: 64TiB}
modes:
  solo: [beta]
`

func TestStatusPage(t *testing.T) {
	needBrowser(t)
	h := newHotswap(t, scenario)
	p := newPage(t, 1280, 1000)
	p.signIn(h)

	t.Run("models and memory bars", func(t *testing.T) {
		p.t = t
		for _, m := range []string{"alpha", "beta", "gamma", "broken", "huge"} {
			p.waitFor("model "+m, state(m)+` === "stopped"`, 10*time.Second)
		}
		p.waitFor("the RAM bar", `!!document.querySelector('#memory .device[data-device="ram"] .bar .seg.free')`, 10*time.Second)
		if got := eval[string](p, `document.querySelector('#models tr[data-model="gamma"] .kind').textContent`); got != "embedding" {
			t.Errorf("gamma's kind shows %q", got)
		}
		if got := eval[string](p, `document.querySelector('#models tr[data-model="alpha"] .memory').textContent`); !strings.Contains(got, "120 MiB") {
			t.Errorf("alpha's declared memory shows %q", got)
		}
	})

	t.Run("a chat request: starting, then ready, without a reload", func(t *testing.T) {
		p.t = t
		eval[bool](p, `window.__sameDocument = true`)
		done := make(chan int, 1)
		go func() { done <- h.chat("alpha") }()
		p.waitFor("alpha starting, with its time", state("alpha")+`.startsWith("starting ")`, 10*time.Second)
		p.waitFor("what the chat waits for", `document.querySelector('#models tr[data-model="alpha"] .queued').textContent === "1waiting for its load"`, 5*time.Second)
		p.waitFor("alpha ready", state("alpha")+` === "ready"`, 15*time.Second)
		if code := <-done; code != 200 {
			t.Errorf("the chat got %d", code)
		}
		if !eval[bool](p, `window.__sameDocument === true`) {
			t.Error("the page was reloaded")
		}
		p.waitFor("alpha's share of the RAM bar", `!!document.querySelector('#memory .seg.model[data-model="alpha"]')`, 10*time.Second)
		// The bar matches /admin/memory (measured again between the two
		// reads: the mock's RSS moves a little).
		var mem []struct {
			Device string           `json:"device"`
			UsedBy map[string]int64 `json:"used_by"`
		}
		h.get("/admin/memory", adminKey, &mem)
		shown := eval[float64](p, `Number(document.querySelector('#memory .device[data-device="ram"] .seg.model[data-model="alpha"]').dataset.bytes)`)
		if len(mem) == 0 || mem[0].Device != "ram" || mem[0].UsedBy["alpha"] == 0 ||
			math.Abs(shown-float64(mem[0].UsedBy["alpha"])) > 0.2*float64(mem[0].UsedBy["alpha"]) {
			t.Errorf("the bar shows alpha using %.0f bytes; /admin/memory says %+v", shown, mem)
		}
		p.waitFor("alpha's ttl counting down", `(document.querySelector('#models tr[data-model="alpha"] .ttl').textContent || "").includes("min")`, 5*time.Second)
	})

	t.Run("a swap and its reason in Activity", func(t *testing.T) {
		p.t = t
		if code := h.chat("beta"); code != 200 {
			t.Fatalf("beta: %d", code)
		}
		p.waitFor("alpha's eviction, making room for beta",
			`[...document.querySelectorAll('#activity li[data-type="evict"][data-model="alpha"]')].some(li => li.textContent.includes("making room for beta"))`, 10*time.Second)
		p.waitFor("beta's start, evicting alpha",
			`[...document.querySelectorAll('#activity li[data-type="start"][data-model="beta"]')].some(li => li.textContent.includes("evicting alpha"))`, 10*time.Second)
		p.waitFor("beta ready, alpha stopped", state("beta")+` === "ready" && `+state("alpha")+` === "stopped"`, 10*time.Second)
		// A refusal says why, with the figures.
		h.call("POST", "/admin/models/broken/load", "", adminKey)
		p.waitFor("broken's failure", `[...document.querySelectorAll('#activity li[data-type="fail"][data-model="broken"]')].length > 0`, 10*time.Second)
		if code := h.chat("huge"); code != 503 {
			t.Errorf("huge: %d", code)
		}
		p.waitFor("huge's refusal, with the figures", `[...document.querySelectorAll('#activity li[data-type="refuse"][data-model="huge"]')].some(li => li.textContent.includes("needs 64TiB of ram but only"))`, 10*time.Second)
		p.waitFor("broken failed, with back-off", state("broken")+`.startsWith("failed, retry in")`, 10*time.Second)
		if why := eval[string](p, `document.querySelector('#models tr[data-model="broken"] .why').textContent`); !strings.Contains(why, "no-such-flag") {
			t.Errorf("broken's reason shows %q, want the backend's own words", why)
		}
	})

	t.Run("a log line appears, tagged and filtered by model", func(t *testing.T) {
		p.t = t
		p.waitFor("beta's own line", `[...document.querySelectorAll('#logs li[data-model="beta"]')].some(li => li.textContent.includes("model beta ready on"))`, 10*time.Second)
		p.do(chromedp.SetValue(chromedp.CSS("#log-filter"), "beta"))
		eval[bool](p, `document.querySelector('#log-filter').dispatchEvent(new Event('change')), true`)
		visible := `[...document.querySelectorAll('#logs .lines li')].filter(li => !li.hidden)`
		if !eval[bool](p, visible+`.every(li => li.dataset.model === "beta") && `+visible+`.length > 0`) {
			t.Error("filtered by beta, other lines still show")
		}
		// New lines follow the filter too.
		h.chat("gamma")
		p.waitFor("gamma's line, hidden", `[...document.querySelectorAll('#logs li[data-model="gamma"]')].some(li => li.hidden)`, 10*time.Second)
		p.do(chromedp.SetValue(chromedp.CSS("#log-filter"), "*"))
		eval[bool](p, `document.querySelector('#log-filter').dispatchEvent(new Event('change')), true`)
	})

	t.Run("unload from the page, with the keyboard", func(t *testing.T) {
		p.t = t
		p.waitFor("beta ready", state("beta")+` === "ready"`, 10*time.Second)
		p.do(chromedp.Focus(chromedp.CSS(`#models tr[data-model="beta"] button.unload`)))
		// Focus survives the page's own updates (a read lands every 2 s,
		// and one after every event).
		before := eval[int](p, `Number(document.body.dataset.refreshes)`)
		p.waitFor("two more reads", fmt.Sprintf(`Number(document.body.dataset.refreshes) >= %d`, before+2), 10*time.Second)
		if !eval[bool](p, `document.activeElement === document.querySelector('#models tr[data-model="beta"] button.unload')`) {
			t.Fatalf("focus moved to %s", eval[string](p, `document.activeElement.outerHTML`))
		}
		p.do(chromedp.KeyEvent("\r"))
		p.waitFor("beta stopped", state("beta")+` === "stopped"`, 15*time.Second)
		if !eval[bool](p, `document.activeElement === document.querySelector('#models tr[data-model="beta"] button.unload')`) {
			t.Error("focus left the button that was pressed")
		}
		p.waitFor("the unload in Activity", `!!document.querySelector('#activity li[data-type="unload"][data-model="beta"]')`, 5*time.Second)
	})

	t.Run("load from the page", func(t *testing.T) {
		p.t = t
		if !eval[bool](p, state("alpha")+` === "stopped"`) {
			t.Fatalf("alpha is %s", eval[string](p, state("alpha")))
		}
		p.do(chromedp.Click(chromedp.CSS(`#models tr[data-model="alpha"] button.load`)))
		p.waitFor("alpha starting", state("alpha")+`.startsWith("starting")`, 10*time.Second)
		p.waitFor("alpha ready", state("alpha")+` === "ready"`, 15*time.Second)
	})

	t.Run("switch a mode and restore it", func(t *testing.T) {
		p.t = t
		p.waitFor("alpha and gamma ready", state("alpha")+` === "ready" && `+state("gamma")+` === "ready"`, 10*time.Second)
		p.do(chromedp.Click(chromedp.CSS(`#modes li[data-mode="solo"] button.switch`)))
		p.waitFor("solo active", `document.querySelector('#active-mode').textContent === "solo" && document.querySelector('#modes li[data-mode="solo"]').classList.contains("active")`, 15*time.Second)
		p.waitFor("beta in, alpha and gamma out", state("beta")+` === "ready" && `+state("alpha")+` === "stopped" && `+state("gamma")+` === "stopped"`, 15*time.Second)
		p.waitFor("alpha and gamma remembered", `document.querySelector('#remembered').textContent === "alpha, gamma"`, 5*time.Second)
		p.waitFor("the switch in Activity", `[...document.querySelectorAll('#activity li[data-type="mode"]')].some(li => li.textContent.includes("solo"))`, 5*time.Second)
		p.do(chromedp.Click(chromedp.CSS(`#restore`)))
		p.waitFor("alpha and gamma back, beta out", state("alpha")+` === "ready" && `+state("gamma")+` === "ready" && `+state("beta")+` === "stopped"`, 15*time.Second)
		p.waitFor("no mode active", `document.querySelector('#active-mode').textContent === "none"`, 5*time.Second)
	})

	t.Run("request rate plot", func(t *testing.T) {
		p.t = t
		// hotswap samples every 5 s: the plot gets points as they come.
		for range 5 {
			h.chat("gamma")
		}
		p.waitFor("the requests plotted", `Number(document.querySelector('#plot-requests').dataset.max) > 0 && !!document.querySelector('#plot-requests polyline')`, 15*time.Second)
	})

	t.Run("a GPU's bar", func(t *testing.T) {
		p.t = t
		// This machine has no GPU: the page is given /admin/memory as
		// hotswap reports it on one with an H200, alpha on both devices.
		eval[bool](p, `(() => {
			const real = window.fetch;
			window.__realFetch = real;
			const gib = 1 << 30;
			const devices = [
				{device: "ram", total: 64 * gib, free: 40 * gib, reserve: gib, used_by: {alpha: 2 * gib}, used: 2 * gib, reserved: 0, available: 39 * gib},
				{device: "gpu0", name: "NVIDIA H200", vendor: "nvidia", total: 140 * gib, free: 100 * gib, reserve: gib / 2, used_by: {alpha: 30 * gib, beta: 8 * gib},
				 used: 38 * gib, reserved: 0, available: 99.5 * gib},
				{device: "gpu1", name: "AMD Radeon 8060S", vendor: "amd", unified: true, total: 48 * gib, free: 40 * gib, reserve: gib / 2, used_by: {gamma: 8 * gib},
				 used: 8 * gib, reserved: 0, available: 39.5 * gib},
			];
			window.fetch = (url, opts) => String(url).startsWith("/admin/memory") ?
				Promise.resolve(new Response(JSON.stringify(devices), {headers: {"Content-Type": "application/json"}})) : real(url, opts);
			return true;
		})()`)
		gpu := `#memory .device[data-device="gpu0"]`
		p.waitFor("the GPU's bar", `!!document.querySelector('`+gpu+` .seg.model[data-model="beta"]')`, 10*time.Second)
		if got := eval[string](p, `document.querySelector('`+gpu+` strong').textContent`); got != "gpu0 · NVIDIA H200" {
			t.Errorf("the GPU is named %q", got)
		}
		// One bar per device, each GPU's labelled with its maker, and the
		// APU's as unified memory.
		apu := `#memory .device[data-device="gpu1"]`
		p.waitFor("the APU's bar", `!!document.querySelector('`+apu+` .seg.model[data-model="gamma"]')`, 10*time.Second)
		if n := eval[int](p, `document.querySelectorAll('#memory .device .bar').length`); n != 3 {
			t.Errorf("%d bars for 3 devices", n)
		}
		for sel, want := range map[string]string{
			`#memory .device[data-device="ram"] .tags`: "",
			gpu + ` .tags`:  "NVIDIA",
			apu + ` .tags`:  "AMD|unified memory",
			apu + ` strong`: "gpu1 · AMD Radeon 8060S",
		} {
			got := eval[string](p, `[...document.querySelector('`+sel+`').children].map(e => e.textContent).join('|') || document.querySelector('`+sel+`').textContent`)
			if got != want {
				t.Errorf("%s: %q, want %q", sel, got, want)
			}
		}
		if got := eval[string](p, `document.querySelector('`+apu+` .bar').getAttribute('aria-label')`); !strings.HasPrefix(got, "gpu1, AMD, AMD Radeon 8060S, unified memory: gamma: 8.0 GiB") {
			t.Errorf("the APU's bar reads %q", got)
		}
		// Shares in proportion to the device, the reserve, what is free;
		// a model has the same colour on every device.
		width := func(sel string) float64 {
			return eval[float64](p, `parseFloat(document.querySelector('`+gpu+` `+sel+`').style.width)`)
		}
		if a, b := width(`.seg.model[data-model="alpha"]`), width(`.seg.model[data-model="beta"]`); math.Abs(a-100*30.0/140) > 0.01 || math.Abs(b-100*8.0/140) > 0.01 {
			t.Errorf("alpha and beta take %.2f%% and %.2f%% of the GPU's bar", a, b)
		}
		if r, f := width(`.seg.reserve`), width(`.seg.free`); math.Abs(r-100*0.5/140) > 0.01 || math.Abs(f-100*99.5/140) > 0.01 {
			t.Errorf("reserve %.2f%%, free %.2f%%", r, f)
		}
		if !eval[bool](p, `document.querySelector('`+gpu+` .seg[data-model="alpha"]').style.background === document.querySelector('#memory .device[data-device="ram"] .seg[data-model="alpha"]').style.background`) {
			t.Error("alpha has two colours")
		}
		eval[bool](p, `window.fetch = window.__realFetch, true`)
		p.waitFor("the real memory again", `!document.querySelector('`+gpu+`')`, 10*time.Second)
	})

	t.Run("screenshot", func(t *testing.T) {
		p.t = t
		p.screenshot("status-page.png")
	})

	t.Run("the connection drops and comes back", func(t *testing.T) {
		p.t = t
		readyBeta := `[...document.querySelectorAll('#activity li[data-type="ready"][data-model="beta"]')].length`
		before := eval[int](p, readyBeta)
		h.stop()
		p.waitFor("the page to say it lost hotswap", `document.querySelector('#conn').classList.contains("down") && document.querySelector('#conn').textContent.includes("lost")`, 15*time.Second)
		h.start()
		p.waitFor("the page to reconnect on its own", `!document.querySelector('#conn').classList.contains("down") && document.querySelector('#conn').textContent === "live"`, 20*time.Second)
		// What it shows is the new hotswap's: nothing is loaded.
		p.waitFor("a fresh read", state("gamma")+` === "stopped"`, 10*time.Second)
		if h.chat("beta") != 200 {
			t.Fatal("beta after the restart")
		}
		p.waitFor("the new hotswap's events", fmt.Sprintf(`%s === "ready" && %s > %d`, state("beta"), readyBeta, before), 15*time.Second)
		if !eval[bool](p, `[...document.querySelectorAll('#activity li[data-type="dropped"]')].some(li => li.textContent.includes("restarted"))`) {
			t.Error("the page did not say that hotswap restarted")
		}
	})
}

func TestStatusPageSignIn(t *testing.T) {
	needBrowser(t)
	h := newHotswap(t, scenario)
	p := newPage(t, 1024, 800)
	p.do(chromedp.Navigate(h.url + "/ui/"))
	p.waitFor("the sign-in form", `location.pathname === "/ui/login"`, 10*time.Second)
	// submit signs in with key and waits for the page that answers.
	submit := func(key string) {
		t.Helper()
		eval[bool](p, `window.__before = true`)
		p.do(chromedp.SendKeys(chromedp.CSS("#key"), key), chromedp.Submit(chromedp.CSS("#key")))
		p.waitFor("the answer to the form", `!window.__before && document.readyState === "complete"`, 10*time.Second)
	}
	refused := `location.pathname === "/ui/login" && !!document.querySelector(".error") && document.querySelector(".error").textContent.includes("not one of admin_keys")`
	submit("wrong")
	p.waitFor("the refusal", refused, 5*time.Second)
	submit(userKey) // a key of the API, not of the admin API
	p.waitFor("the refusal", refused, 5*time.Second)
	submit(adminKey)
	p.waitFor("the page", `location.pathname === "/ui/" && document.body.dataset.loaded === "true"`, 10*time.Second)
	p.waitFor("sign out offered", `!document.querySelector('#signout').hidden`, 5*time.Second)
	p.do(chromedp.Click(chromedp.CSS("#signout button")))
	p.waitFor("signed out", `location.pathname === "/ui/login"`, 10*time.Second)
	p.do(chromedp.Navigate(h.url + "/ui/"))
	p.waitFor("the sign-in form again", `location.pathname === "/ui/login" && !!document.querySelector("#key")`, 10*time.Second)
}

func TestStatusPageOnAPhone(t *testing.T) {
	needBrowser(t)
	h := newHotswap(t, scenario)
	p := newPage(t, 375, 740)
	p.signIn(h)
	if h.chat("beta") != 200 {
		t.Fatal("beta")
	}
	p.waitFor("beta ready", state("beta")+` === "ready"`, 10*time.Second)
	// Nothing is wider than the screen, and every button can be reached.
	if w := eval[int](p, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the page is %d px wide on a 375 px screen", w)
	}
	if !eval[bool](p, `[...document.querySelectorAll('button')].filter(b => b.offsetParent).every(b => b.getBoundingClientRect().right <= innerWidth)`) {
		t.Error("a button is off the screen")
	}
	p.screenshot("status-page-phone.png")
	p.do(chromedp.Click(chromedp.CSS(`#models tr[data-model="beta"] button.unload`)))
	p.waitFor("beta stopped", state("beta")+` === "stopped"`, 15*time.Second)
}

func TestStatusPageWithFiftyModels(t *testing.T) {
	needBrowser(t)
	var cfg strings.Builder
	cfg.WriteString("ports: 29500-29999\nmemory: {reserve_ram: 0}\nmodels:\n")
	for i := range 50 {
		fmt.Fprintf(&cfg, "  model-%02d: {cmd: \"MOCK -port ${PORT} -model ${MODEL}\", memory: {ram: 20MiB}}\n", i)
	}
	h := newHotswap(t, cfg.String()) // no keys: the page is open
	p := newPage(t, 1280, 900)
	p.do(chromedp.Navigate(h.url + "/ui/"))
	p.waitFor("fifty rows", `document.querySelectorAll('#models tbody tr').length === 50`, 15*time.Second)
	if !eval[bool](p, `!!document.querySelector('#signout').hidden`) {
		t.Error("sign out offered without keys")
	}
	// Ten loaded: the bar has a share for each, the legend names some and
	// counts the rest.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.call("POST", fmt.Sprintf("/admin/models/model-%02d/load", i), "", "")
		}()
	}
	wg.Wait()
	p.waitFor("ten shares of RAM", `document.querySelectorAll('#memory .seg.model').length === 10`, 15*time.Second)
	p.waitFor("the legend's count of the rest", `[...document.querySelectorAll('#memory .legend li')].some(li => li.textContent.startsWith("+2 more"))`, 5*time.Second)
	if w := eval[int](p, `document.documentElement.scrollWidth`); w > 1280 {
		t.Errorf("the page is %d px wide", w)
	}
	// Rows stay in configuration order.
	if !eval[bool](p, `[...document.querySelectorAll('#models tbody tr')].map(r => r.dataset.model).join() === Array.from({length: 50}, (_, i) => "model-" + String(i).padStart(2, "0")).join()`) {
		t.Error("rows out of order")
	}
	// The filter box narrows the list as one types.
	p.do(chromedp.SendKeys(chromedp.CSS("#model-filter"), "model-4"))
	p.waitFor("ten rows shown", `[...document.querySelectorAll('#models tbody tr')].filter(r => !r.hidden).map(r => r.dataset.model).join() === "model-40,model-41,model-42,model-43,model-44,model-45,model-46,model-47,model-48,model-49"`, 5*time.Second)
	// and keeps them so while the page updates.
	before := eval[int](p, `Number(document.body.dataset.refreshes)`)
	p.waitFor("another read", fmt.Sprintf(`Number(document.body.dataset.refreshes) > %d`, before), 10*time.Second)
	if n := eval[int](p, `[...document.querySelectorAll('#models tbody tr')].filter(r => !r.hidden).length`); n != 10 {
		t.Errorf("after a read, %d rows shown", n)
	}
	h.call("POST", "/admin/unload", "", "")
}
