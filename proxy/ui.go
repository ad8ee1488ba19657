package proxy

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/ui"
)

// The status page (/ui/) is protected like the admin API. A browser
// cannot put a Bearer key on the page's own loads nor on an EventSource,
// so the page signs in once with a form and gets a cookie that stands for
// the key: the HMAC of the key, which proves it was known without holding
// it. It stays valid while the key is in admin_keys (api_keys when there
// are none), so it outlives restarts and dies with the key. The cookie is
// SameSite=Strict and HttpOnly, and a request it authorizes must come from
// hotswap's own origin, so that another site cannot drive the admin API
// through a signed-in browser.

const sessionCookie = "hotswap_session"

// sessionToken is what the cookie holds for key.
func sessionToken(key string) []byte {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte("hotswap status page session"))
	return []byte(hex.EncodeToString(mac.Sum(nil)))
}

// adminAuthorized reports whether the request may use the admin API: with
// a key, or the page's cookie from a page of hotswap's own.
func (s *Server) adminAuthorized(ctx *fasthttp.RequestCtx) bool {
	keys := s.adminKeys()
	if s.authorized(ctx, keys) {
		return true
	}
	cookie := ctx.Request.Header.Cookie(sessionCookie)
	if len(cookie) == 0 || !sameOrigin(ctx) {
		return false
	}
	for _, k := range keys {
		if hmac.Equal(cookie, sessionToken(k)) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether a browser's request comes from a page of
// this host: it has no Origin (browsers send one with every POST, and
// with cross-origin reads) or one whose host is the one asked, directly
// or (behind a reverse proxy) as X-Forwarded-Host. A page elsewhere
// cannot set that header without a preflight, which /admin refuses.
func sameOrigin(ctx *fasthttp.RequestCtx) bool {
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return true
	}
	u, err := url.Parse(string(origin))
	if err != nil || u.Host == "" {
		return false
	}
	fwd := ctx.Request.Header.Peek("X-Forwarded-Host")
	return u.Host == string(ctx.Host()) || (len(fwd) > 0 && u.Host == string(fwd))
}

// handleUI serves /ui/ and its files, the sign-in form and sign-out.
func (s *Server) handleUI(ctx *fasthttp.RequestCtx, path []byte) {
	name := string(bytes.TrimPrefix(path, []byte("/ui/")))
	open := len(s.adminKeys()) == 0
	switch {
	case string(path) == "/ui":
		s.redirect(ctx, "/ui/", fasthttp.StatusMovedPermanently)
	case name == "login" && ctx.IsPost():
		s.signIn(ctx)
	case name == "login" && (ctx.IsGet() || ctx.IsHead()):
		if open {
			s.redirect(ctx, "/ui/", fasthttp.StatusSeeOther)
			return
		}
		s.page(ctx, fasthttp.StatusOK, "text/html; charset=utf-8", ui.Login(false))
	case name == "logout" && ctx.IsPost():
		var c fasthttp.Cookie
		c.SetKey(sessionCookie)
		c.SetPath("/")
		c.SetExpire(fasthttp.CookieExpireDelete)
		ctx.Response.Header.SetCookie(&c)
		s.redirect(ctx, "/ui/login", fasthttp.StatusSeeOther)
	case name == "session" && (ctx.IsGet() || ctx.IsHead()):
		// Whether the page needs a key: it offers to sign out if so.
		s.writeJSON(ctx, map[string]bool{"keys": !open})
		s.logRead(ctx, fasthttp.StatusOK, len(ctx.Response.Body()))
	case name == "login", name == "logout", name == "session":
		s.fail(ctx, "", methodNotAllowed(map[string]string{"login": "GET or POST", "logout": "POST", "session": "GET"}[name]))
	case !ctx.IsGet() && !ctx.IsHead():
		s.fail(ctx, "", methodNotAllowed("GET"))
	case !s.adminAuthorized(ctx):
		// A browser is sent to sign in; a script gets the API's error.
		if name == "" && bytes.Contains(ctx.Request.Header.Peek("Accept"), []byte("text/html")) {
			s.redirect(ctx, "/ui/login", fasthttp.StatusSeeOther)
			return
		}
		s.fail(ctx, "", errUnauthorized)
	default:
		body, ct, ok := ui.File(name)
		if !ok {
			s.fail(ctx, "", unknownPath(string(path)))
			return
		}
		s.page(ctx, fasthttp.StatusOK, ct, body)
	}
}

// signIn checks the form's key and, if it is an admin key, sets the
// page's cookie.
func (s *Server) signIn(ctx *fasthttp.RequestCtx) {
	key := ctx.PostArgs().Peek("key")
	keys := s.adminKeys()
	if (len(keys) > 0 && !oneOf(key, keys)) || !sameOrigin(ctx) {
		s.page(ctx, fasthttp.StatusUnauthorized, "text/html; charset=utf-8", ui.Login(true))
		return
	}
	if len(key) > 0 {
		var c fasthttp.Cookie
		c.SetKey(sessionCookie)
		c.SetValueBytes(sessionToken(string(key)))
		c.SetPath("/")
		c.SetHTTPOnly(true)
		c.SetSameSite(fasthttp.CookieSameSiteStrictMode)
		c.SetSecure(ctx.IsTLS())
		c.SetMaxAge(int((30 * 24 * time.Hour).Seconds()))
		ctx.Response.Header.SetCookie(&c)
	}
	s.redirect(ctx, "/ui/", fasthttp.StatusSeeOther)
}

// redirect sends the browser to to, a path: relative, so that it holds
// behind a proxy that serves hotswap under another host.
func (s *Server) redirect(ctx *fasthttp.RequestCtx, to string, status int) {
	ctx.Response.Header.Set("Location", to)
	ctx.SetStatusCode(status)
	s.logRead(ctx, status, 0)
}

// page answers with one of the page's files. The page loads only its
// own files and talks only to hotswap, and may not be framed (its
// buttons unload models).
func (s *Server) page(ctx *fasthttp.RequestCtx, status int, contentType string, body []byte) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Not no-referrer: with it, a browser sends its form posts with
	// "Origin: null", which sameOrigin must refuse.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentType)
	ctx.SetBody(body)
	s.logRead(ctx, status, len(body))
}
