package proxy

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/hotswap/hotswap/ui"
)

// The status page (/ui/) is protected like the admin API. A browser
// cannot put a Bearer key on the page's own loads nor on an EventSource,
// so the page signs in once with a form and gets a cookie that stands for
// the key for server.session_ttl (see package session): it proves the key
// was known without holding it, dies with the key, is renewed while the
// page is used, and signing out revokes it. The cookie is SameSite=Strict
// and HttpOnly, and a request it authorizes must come from hotswap's own
// origin, so that another site cannot drive the admin API through a
// signed-in browser.

const sessionCookie = "hotswap_session"

// adminAuthorized reports whether the request may use the admin API: with
// a key, or the page's cookie from a page of hotswap's own. A cookie past
// half its life is renewed on the answer.
func (s *Server) adminAuthorized(ctx *fasthttp.RequestCtx) bool {
	keys := s.adminKeys()
	if hasKey(&ctx.Request.Header, keys) {
		return true
	}
	cookie := ctx.Request.Header.Cookie(sessionCookie)
	if len(cookie) == 0 || !sameOrigin(ctx) {
		return false
	}
	tok, key, ok := s.sessions.Check(cookie, keys)
	if !ok {
		return false
	}
	if ttl := s.server.SessionTTL; tok.Expires().Sub(s.clock.Now()) < ttl/2 {
		_, value := s.sessions.Renew(tok, key, ttl)
		s.setSessionCookie(ctx, value, ttl)
	}
	return true
}

// setSessionCookie sets the page's cookie to value, for ttl.
func (s *Server) setSessionCookie(ctx *fasthttp.RequestCtx, value string, ttl time.Duration) {
	var c fasthttp.Cookie
	c.SetKey(sessionCookie)
	c.SetValue(value)
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteStrictMode)
	c.SetSecure(ctx.IsTLS())
	c.SetMaxAge(int(ttl.Seconds()))
	ctx.Response.Header.SetCookie(&c)
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
		s.signOut(ctx)
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
// page's cookie. The form is read only up to loginBody: nobody signed in
// yet can make hotswap read more.
func (s *Server) signIn(ctx *fasthttp.RequestCtx) {
	if err := s.readBody(ctx, loginBody); err != nil {
		s.fail(ctx, "", err)
		return
	}
	key := ctx.PostArgs().Peek("key")
	keys := s.adminKeys()
	if (len(keys) > 0 && !oneOf(key, keys)) || !sameOrigin(ctx) {
		s.page(ctx, fasthttp.StatusUnauthorized, "text/html; charset=utf-8", ui.Login(true))
		return
	}
	if len(key) > 0 {
		ttl := s.server.SessionTTL
		_, value := s.sessions.Issue(string(key), ttl)
		s.setSessionCookie(ctx, value, ttl)
	}
	s.redirect(ctx, "/ui/", fasthttp.StatusSeeOther)
}

// signOut revokes the session of the request's cookie, if it is good:
// a copy of the cookie taken before is no longer good either.
func (s *Server) signOut(ctx *fasthttp.RequestCtx) {
	cookie := ctx.Request.Header.Cookie(sessionCookie)
	if len(cookie) == 0 || !sameOrigin(ctx) {
		return
	}
	if tok, _, ok := s.sessions.Check(cookie, s.adminKeys()); ok {
		if err := s.sessions.Revoke(tok); err != nil {
			s.log.Warn("the signed-out session could not be written down: a restart would make it good again until it expires",
				zap.Error(err))
		}
	}
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
