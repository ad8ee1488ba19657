// Command picture takes docs/load-progress.png: llama.cpp's own web UI
// (tools/ui, built from source) talking to a running hotswap, in headless
// Chromium, with a chat whose model had to be started first, so that the
// answer's thinking shows hotswap's load progress.
//
// It serves the built UI and proxies every other path to hotswap from one
// origin (the UI calls relative URLs: /props, /models, /models/sse,
// /v1/chat/completions ...), opens the UI, sends a message, and saves a
// screenshot while the model loads and one after the answer. Every request
// the UI made that hotswap answered with a 4xx or 5xx, and every error in the
// browser's console, is printed.
//
// Build the UI (llama.cpp's tools/ui, Node 20 or later; the pictures are of
// llama.cpp 3f545beccee69d9975f466ec7e45fd9aacd8ba90):
//
//	git --git-dir=LLAMA_CPP.git archive HEAD tools/ui | tar -x -C /tmp/ui-src
//	cd /tmp/ui-src/tools/ui && npm ci && npm run build    # writes ./dist
//
// Run hotswap with a model that takes a few seconds to start and has
// load_progress: reasoning, such as
//
//	listen: 127.0.0.1:18080
//	models:
//	  qwen3-8b:
//	    cmd: bin/mockbackend -port ${PORT} -model ${MODEL} -startup 12s -tokens 20 -stream-interval 50ms -progress-interval 0
//	    load_progress: reasoning
//
// then, from the repository's root:
//
//	go run ./docs/picture -ui /tmp/ui-src/tools/ui/dist -hotswap http://127.0.0.1:18080 \
//	    -out docs/load-progress.png -loading-out docs/load-progress-loading.png
//
// It needs Chromium (-browser, /usr/bin/chromium by default). The proxy
// keeps the browser's Host, as a reverse proxy in front of hotswap must:
// hotswap refuses a page's POST whose Origin is not its Host unless
// cors_origins names that origin.
//
// With -serve it only serves the UI and the proxy on -listen, for a person's
// own browser. The model must be stopped when it starts (the picture is of
// its load), and be the one the UI chooses: the only one hotswap serves.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	uiDir := flag.String("ui", "", "the built UI (llama.cpp's tools/ui/dist)")
	target := flag.String("hotswap", "http://127.0.0.1:8080", "hotswap's URL")
	out := flag.String("out", "docs/load-progress.png", "the screenshot of the answer, its thinking opened")
	loadingOut := flag.String("loading-out", "", "a screenshot taken while the model loads (none if empty)")
	lastWord := flag.String("last-word", "tok19", "the answer's last word, which says it is whole (mockbackend -tokens 20's)")
	listen := flag.String("listen", "127.0.0.1:0", "where to serve the UI and the proxy")
	serve := flag.Bool("serve", false, "only serve the UI and the proxy, until interrupted")
	model := flag.String("model", "qwen3-8b", "the model to chat with")
	prompt := flag.String("prompt", "Hello! Which model am I talking to?", "the message sent")
	browser := flag.String("browser", "/usr/bin/chromium", "Chromium's path")
	width := flag.Int("width", 1280, "the window's width")
	height := flag.Int("height", 800, "the window's height")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long the whole run may take")
	flag.Parse()
	if *uiDir == "" {
		log.Fatal("-ui is required: the UI's build (tools/ui/dist)")
	}
	if _, err := os.Stat(filepath.Join(*uiDir, "index.html")); err != nil {
		log.Fatalf("-ui: %v", err)
	}
	up, err := url.Parse(*target)
	if err != nil || up.Host == "" {
		log.Fatalf("-hotswap %q: not a URL", *target)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	origin := "http://" + ln.Addr().String()
	srv := &http.Server{Handler: handler(*uiDir, up), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	log.Printf("serving %s and proxying to %s on %s", *uiDir, up, origin)
	if *serve {
		select {}
	}

	if err := stopped(up, *model); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := shoot(ctx, shot{
		origin: origin, model: *model, prompt: *prompt, browser: *browser,
		width: *width, height: *height, out: *out, loadingOut: *loadingOut, lastWord: *lastWord,
	}); err != nil {
		log.Fatal(err)
	}
	shut, cancelShut := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShut()
	_ = srv.Shutdown(shut)
	printProblems()
}

// stopped checks that hotswap lists model, stopped: the picture is of its
// load. The UI chats with the model it chose, which is this one when
// hotswap serves no other.
func stopped(up *url.URL, model string) error {
	resp, err := http.Get(up.JoinPath("/v1/models").String())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID     string `json:"id"`
			Status struct {
				Value string `json:"value"`
			} `json:"status"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return fmt.Errorf("GET /v1/models: %d %w", resp.StatusCode, err)
	}
	for _, m := range list.Data {
		if m.ID == model {
			if m.Status.Value != "unloaded" {
				return fmt.Errorf("%s is %s: stop it first (POST /models/unload {\"model\":%q})", model, m.Status.Value, model)
			}
			if len(list.Data) > 1 {
				log.Printf("hotswap serves %d models: the UI must have %s chosen", len(list.Data), model)
			}
			return nil
		}
	}
	return fmt.Errorf("hotswap does not list %s (-model)", model)
}

// handler serves the UI's files, index.html for /, and proxies every other
// path to hotswap, flushing each write at once (the chat's stream, the
// /models/sse feed).
func handler(dir string, up *url.URL) http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			// The Host the browser sent, as a reverse proxy in front of
			// hotswap keeps it: hotswap refuses a page's request whose
			// Origin is not the Host's (another site's), unless
			// cors_origins names it.
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
	}
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if p == "/" {
				http.ServeFile(w, r, filepath.Join(dir, "index.html"))
				return
			}
			if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p))); err == nil && !fi.IsDir() {
				files.ServeHTTP(w, r)
				return
			}
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		proxy.ServeHTTP(rec, r)
		line := fmt.Sprintf("%s %s -> %d", r.Method, r.URL.RequestURI(), rec.status)
		log.Print("proxied ", line)
		if rec.status >= 400 {
			noteProblem(line + ": " + strings.TrimSpace(rec.body.String()))
		}
	})
}

// recorder keeps a response's status, and the start of an error's body.
type recorder struct {
	http.ResponseWriter
	status int
	body   strings.Builder
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status >= 400 && r.body.Len() < 300 {
		r.body.Write(b[:min(len(b), 300)])
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

var (
	problemsMu sync.Mutex
	problems   []string
)

func noteProblem(s string) {
	problemsMu.Lock()
	defer problemsMu.Unlock()
	problems = append(problems, s)
}

func printProblems() {
	problemsMu.Lock()
	defer problemsMu.Unlock()
	if len(problems) == 0 {
		log.Print("no failed request, no console error")
		return
	}
	log.Printf("%d problems between the UI and hotswap:", len(problems))
	for _, p := range problems {
		log.Print("  ", p)
	}
}

type shot struct {
	origin, model, prompt, browser string
	width, height                  int
	out, loadingOut, lastWord      string
}

// shoot opens the UI, sends the prompt, and takes the screenshots.
func shoot(ctx context.Context, s shot) error {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(s.browser),
		chromedp.WindowSize(s.width, s.height),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("hide-scrollbars", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(bctx); err != nil {
		return fmt.Errorf("starting %s: %w", s.browser, err)
	}
	go func() {
		for m, err := range chromedp.Console(bctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				line := fmt.Sprintf("console %s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1)
				log.Print(line)
				if m.Type != chromedp.ConsoleWarning {
					noteProblem(line)
				}
			}
		}
	}()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) error {
		c, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(c, actions...); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	text := func() string {
		c, cancel := context.WithTimeout(bctx, 5*time.Second)
		defer cancel()
		t, _ := chromedp.Run(c, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		return t
	}
	waitFor := func(what, script string, d time.Duration) error {
		deadline := time.Now().Add(d)
		for {
			c, cancel := context.WithTimeout(bctx, 5*time.Second)
			ok, err := chromedp.Run(c, chromedp.Evaluate[bool](script))
			cancel()
			if err == nil && ok {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("waited %v for %s (last error: %v); the page said:\n%s", d, what, err, text())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	save := func(name string) error {
		c, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(c, chromedp.CaptureScreenshot())
		if err != nil {
			return err
		}
		if err := os.WriteFile(name, png, 0o644); err != nil {
			return err
		}
		log.Printf("wrote %s (%d bytes)", name, len(png))
		return nil
	}

	if err := run("opening the UI", chromedp.EmulateViewport(int64(s.width), int64(s.height)), chromedp.Navigate(s.origin+"/")); err != nil {
		return err
	}
	// Thinking shown while it streams (Settings, "Show thought in
	// progress"), as a person would set it; then the page again, to read it.
	settings := `localStorage.setItem("LlamaUi.config", JSON.stringify(Object.assign(
		JSON.parse(localStorage.getItem("LlamaUi.config") || "{}"), {showThoughtInProgress: true}))); true`
	if err := waitFor("the page's script", settings, 10*time.Second); err != nil {
		return err
	}
	if err := run("reloading the UI", chromedp.Reload()); err != nil {
		return err
	}
	if err := waitFor("the message box", `!!document.querySelector("textarea")`, 20*time.Second); err != nil {
		return err
	}
	if err := run("typing the message",
		chromedp.Click(chromedp.CSS("textarea")),
		chromedp.SendKeys(chromedp.CSS("textarea"), s.prompt),
	); err != nil {
		return err
	}
	if err := run("sending it", chromedp.KeyEvent("\r")); err != nil {
		return err
	}
	// The first progress line, then a moment for the next ones, and the
	// picture of the wait.
	if err := waitFor("the load's progress", `document.body.innerText.includes(`+jsString("loading "+s.model)+`)`, 20*time.Second); err != nil {
		return err
	}
	if s.loadingOut != "" {
		if err := waitFor("a second progress line", `(document.body.innerText.match(/loading /g) || []).length >= 2`, 15*time.Second); err != nil {
			log.Print(err)
		}
		time.Sleep(300 * time.Millisecond)
		if err := save(s.loadingOut); err != nil {
			return err
		}
	}
	// The answer, whole: its last word, and the send button back.
	if err := waitFor("the answer", `document.body.innerText.includes(`+jsString(s.lastWord)+`) &&
		[...document.querySelectorAll("button")].some(b => b.textContent.trim() === "Send")`, 60*time.Second); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)
	// A finished answer's thinking is folded: open it.
	open := `(() => {
		for (const b of document.querySelectorAll("button")) {
			if (b.textContent.includes("Reasoning") && b.textContent.includes("Toggle content") &&
				(b.getAttribute("aria-expanded") === "false" || b.dataset.state === "closed")) b.click();
		}
		return document.body.innerText.includes("is ready");
	})()`
	if err := waitFor("the thinking, opened", open, 10*time.Second); err != nil {
		return err
	}
	time.Sleep(700 * time.Millisecond)
	log.Printf("the page said:\n%s", text())
	return save(s.out)
}

func jsString(s string) string {
	return fmt.Sprintf("%q", s)
}
