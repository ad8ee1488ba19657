package ui

import (
	"bytes"
	"strings"
	"testing"
)

func TestFile(t *testing.T) {
	for name, ct := range map[string]string{"": "text/html", "index.html": "text/html", "app.js": "text/javascript",
		"style.css": "text/css"} {
		b, got, ok := File(name)
		if !ok || len(b) == 0 || !strings.HasPrefix(got, ct) {
			t.Errorf("File(%q): %d bytes, %q, %v", name, len(b), got, ok)
		}
	}
	for _, name := range []string{"nothing.js", "../ui.go", "/etc/passwd", "static/app.js", "./app.js", "login.html"} {
		if _, _, ok := File(name); ok {
			t.Errorf("File(%q) is served", name)
		}
	}
}

func TestPageLoadsNothingFromElsewhere(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		b, _, _ := File(name)
		for _, bad := range [][]byte{[]byte("http://"), []byte("https://"), []byte("//cdn")} {
			// The SVG namespace is a name, not a load.
			if i := bytes.Index(b, bad); i >= 0 && !bytes.HasPrefix(b[i:], []byte("http://www.w3.org/2000/svg")) {
				t.Errorf("%s refers to %s", name, b[i:min(len(b), i+40)])
			}
		}
	}
}

func TestLogin(t *testing.T) {
	if b := string(Login(false)); !strings.Contains(b, `action="/ui/login"`) || strings.Contains(b, `class="error"`) {
		t.Errorf("the form:\n%s", b)
	}
	if b := string(Login(true)); !strings.Contains(b, `class="error"`) {
		t.Errorf("the form after a wrong key:\n%s", b)
	}
}
