// Package ui is hotswap's status page: plain HTML, CSS and JavaScript,
// embedded in the binary and served at /ui/. The page is built on the
// admin API (/admin/*) alone, so it needs no build step, no network and
// nothing the API does not already give an operator's script.
package ui

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"mime"
	"path"
)

//go:embed static
var static embed.FS

//go:embed login.html
var loginHTML string

var login = template.Must(template.New("login").Parse(loginHTML))

// File returns the page's file name ("" is index.html) and its content
// type, or false if there is no such file.
func File(name string) (body []byte, contentType string, ok bool) {
	if name == "" {
		name = "index.html"
	}
	if !fs.ValidPath(name) {
		return nil, "", false
	}
	b, err := static.ReadFile(path.Join("static", name))
	if err != nil {
		return nil, "", false
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return b, ct, true
}

// Login is the page that asks for the admin key; failed says the last
// key given was wrong.
func Login(failed bool) []byte {
	var b bytes.Buffer
	// The template is fixed and its data a bool: it cannot fail.
	_ = login.Execute(&b, struct{ Failed bool }{failed})
	return b.Bytes()
}
