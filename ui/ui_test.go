package ui_test

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/ui"
)

// These tests are in package ui_test, beside the browser tests, so that
// the page's own checks can use their browser and hotswap.

func TestFile(t *testing.T) {
	for name, ct := range map[string]string{"": "text/html", "index.html": "text/html", "app.js": "text/javascript",
		"style.css": "text/css"} {
		b, got, ok := ui.File(name)
		if !ok || len(b) == 0 || !strings.HasPrefix(got, ct) {
			t.Errorf("File(%q): %d bytes, %q, %v", name, len(b), got, ok)
		}
	}
	for _, name := range []string{"nothing.js", "../ui.go", "/etc/passwd", "static/app.js", "./app.js", "login.html"} {
		if _, _, ok := ui.File(name); ok {
			t.Errorf("File(%q) is served", name)
		}
	}
}

func TestPageLoadsNothingFromElsewhere(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		b, _, _ := ui.File(name)
		for _, bad := range [][]byte{[]byte("http://"), []byte("https://"), []byte("//cdn")} {
			// The SVG namespace is a name, not a load.
			if i := bytes.Index(b, bad); i >= 0 && !bytes.HasPrefix(b[i:], []byte("http://www.w3.org/2000/svg")) {
				t.Errorf("%s refers to %s", name, b[i:min(len(b), i+40)])
			}
		}
	}
}

func TestLogin(t *testing.T) {
	if b := string(ui.Login(false)); !strings.Contains(b, `action="/ui/login"`) || strings.Contains(b, `class="error"`) {
		t.Errorf("the form:\n%s", b)
	}
	if b := string(ui.Login(true)); !strings.Contains(b, `class="error"`) {
		t.Errorf("the form after a wrong key:\n%s", b)
	}
}

// TestStatusPageShowsDurations: the page says how long things took as
// durations, in its log lines (a request's took, from the log's own
// field) and in activity (a backend ready in 40 ms is not "0.0 s").
func TestStatusPageShowsDurations(t *testing.T) {
	needBrowser(t)
	h := newHotswap(t, `
admin_keys: [`+adminKey+`]
api_keys: [`+userKey+`]
ports: 28500-28599
models:
  gamma: {cmd: "MOCK -port ${PORT} -model ${MODEL}", memory: {ram: 40MiB}}
`)
	p := newPage(t, 1280, 1000)
	p.signIn(h)
	for s, want := range map[float64]string{0: "0 ms", 0.04: "40 ms", 0.9994: "999 ms", 1.5: "1.5 s", 90: "1 min 30 s"} {
		if got := eval[string](p, "duration("+strconv.FormatFloat(s, 'g', -1, 64)+")"); got != want {
			t.Errorf("duration(%v) = %q, want %q", s, got, want)
		}
	}
	// The page watches the log, so the request's line is made and shown.
	if code := h.chat("gamma"); code != 200 {
		t.Fatalf("chat: %d", code)
	}
	line := `[...document.querySelectorAll('#logs .lines li')].map(li => li.textContent).find(t => t.includes('/v1/chat/completions') && t.includes('took=')) || ""`
	p.waitFor("the request's log line", "!!("+line+")", 10*time.Second)
	took := regexp.MustCompile(`took=(\S+)`).FindStringSubmatch(eval[string](p, line))
	if took == nil || !regexp.MustCompile(`^[0-9.]+(ns|µs|ms|s)$`).MatchString(took[1]) {
		t.Errorf("the request's line says %q: took is not a duration", eval[string](p, line))
	}
	ready := `[...document.querySelectorAll('#activity li[data-type="ready"]')].map(li => li.textContent).join("|")`
	p.waitFor("gamma ready, in activity", ready+".includes('ready after')", 10*time.Second)
	if got := eval[string](p, ready); !regexp.MustCompile(`ready after ([1-9][0-9]* ms|[0-9.]+ s)`).MatchString(got) ||
		strings.Contains(got, "0.0 s") {
		t.Errorf("activity says %q", got)
	}
}
