package proxy

import (
	"bytes"
	"encoding/base64"
	"os"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/config"
)

// Who may use hotswap is decided from a request's headers alone, before a
// byte of its body is read (see gate): the name it was sent to, the page
// it comes from, and its key. A client without a key costs hotswap its
// headers, never its body.
//
// A browser is the one client that can be made to send requests by
// someone else: any page it shows can post to 127.0.0.1. Two checks stop
// that, with or without keys. The Host must be a name hotswap answers to,
// so that a page whose own name was rebound to this machine (DNS
// rebinding) is refused. And a request sent by a page of another site
// (its Origin, or Sec-Fetch-Site where a browser sends no Origin) is
// refused unless cors_origins lets that origin in. Clients that are not
// browsers send neither header and are not affected.

// hostNotAllowed answers a request whose Host hotswap does not answer to.
func hostNotAllowed(host []byte) *apiError {
	return &apiError{Status: 403, Type: "invalid_request_error", Code: "host_not_allowed",
		Message: "hotswap does not answer to the host " + clip(string(host)) +
			": add it to allowed_hosts (this stops web pages from reaching hotswap through a name of their own)"}
}

var errCrossSite = &apiError{Status: 403, Type: "invalid_request_error", Code: "origin_not_allowed",
	Message: "a page of another site may not call hotswap: add its origin to cors_origins to allow it"}

// gate decides, from the headers, whether the request may go on: the Host
// and the page it comes from for everything but /health, and the key the
// path needs. The status page's own paths check their key themselves (its
// sign-in form needs none).
func (s *Server) gate(ctx *fasthttp.RequestCtx, path []byte) *apiError {
	if string(path) == "/health" {
		return nil
	}
	if host := ctx.Host(); !s.hostAllowed(host) {
		return hostNotAllowed(host)
	}
	if ae := s.crossSite(ctx, path); ae != nil {
		return ae
	}
	switch {
	case string(path) == "/metrics/endpoint":
		// An endpoint picker's scraper cannot send a key: endpoint_picker
		// opens it (or serves it on a listener of its own).
		if !s.config().EndpointPicker.Open && !s.adminAuthorized(ctx) {
			return errUnauthorized
		}
	case bytes.HasPrefix(path, []byte("/admin/")), string(path) == "/metrics":
		if !s.adminAuthorized(ctx) {
			return errUnauthorized
		}
	case isPreflight(ctx) && (isOllama(path) || isLlamaModels(path)):
		// A preflight carries no key: what it asks for will.
	case isLlamaModels(path) && !ctx.IsGet() && !ctx.IsHead():
		// llama.cpp's load and unload are operators' commands, as
		// /admin's are.
		if !s.adminAuthorized(ctx) {
			return errUnauthorized
		}
	case bytes.HasPrefix(path, []byte("/upstream/")), isOllama(path), isLlamaModels(path),
		forwardable(path) && !isPreflight(ctx):
		if !hasKey(&ctx.Request.Header, s.config().APIKeys) {
			return errUnauthorized
		}
	}
	return nil
}

// hostAllowed reports whether host (a request's Host header) names this
// hotswap: an IP address, a loopback name, the listen address's host, the
// machine's own name, or one of allowed_hosts. A name is what a page can
// rebind; an address it cannot. No Host at all (HTTP/1.0) is no browser's.
func (s *Server) hostAllowed(host []byte) bool {
	name := hostName(host)
	if len(name) == 0 || isIPLiteral(name) || equalFold(name, "localhost") || hasSuffixFold(name, ".localhost") {
		return true
	}
	for _, own := range s.ownNames {
		if equalFold(name, own) {
			return true
		}
	}
	for _, a := range s.config().AllowedHosts {
		switch {
		case a == "*":
			return true
		case strings.HasPrefix(a, "*."):
			if hasSuffixFold(name, a[1:]) {
				return true
			}
		case equalFold(name, a):
			return true
		}
	}
	return false
}

// ownNames are the names hotswap answers to besides addresses and
// loopback names: the listen address's host (if a name) and the
// machine's, with and without its domain and as an mDNS .local name.
func ownNames(listen string) []string {
	var names []string
	if host := hostName([]byte(listen)); len(host) > 0 && !isIPLiteral(host) {
		names = append(names, strings.ToLower(string(host)))
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		short, _, _ := strings.Cut(h, ".")
		names = append(names, h, short, short+".local")
	}
	return names
}

// hostName is host without its port, brackets or trailing dot.
func hostName(host []byte) []byte {
	switch {
	case len(host) > 0 && host[0] == '[':
		if i := bytes.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	case bytes.Count(host, []byte(":")) == 1:
		host = host[:bytes.IndexByte(host, ':')]
	}
	return bytes.TrimSuffix(host, []byte("."))
}

// isIPLiteral reports whether name (without brackets or port) is an IP
// address rather than a DNS name: IPv6 has colons, and no top-level
// domain is all digits.
func isIPLiteral(name []byte) bool {
	if bytes.IndexByte(name, ':') >= 0 {
		return true
	}
	dots := 0
	for _, c := range name {
		switch {
		case c == '.':
			dots++
		case c < '0' || c > '9':
			return false
		}
	}
	return dots == 3
}

func equalFold(b []byte, s string) bool { return len(b) == len(s) && strings.EqualFold(string(b), s) }

func hasSuffixFold(b []byte, suffix string) bool {
	return len(b) > len(suffix) && strings.EqualFold(string(b[len(b)-len(suffix):]), suffix)
}

// crossSite refuses a request sent by a page of another site: one whose
// Origin is neither hotswap's own nor in cors_origins, or that a browser
// marks cross-site (or same-site: another port of this machine is another
// application) without saying its origin. What a page may still do is
// link to the status page: a navigation to /ui/ opens it, and its own
// requests are then same-origin.
func (s *Server) crossSite(ctx *fasthttp.RequestCtx, path []byte) *apiError {
	h := &ctx.Request.Header
	if origin := h.Peek("Origin"); len(origin) > 0 {
		if sameOrigin(ctx) || s.corsAllowed(origin) != nil {
			return nil
		}
		return errCrossSite
	}
	switch string(h.Peek("Sec-Fetch-Site")) {
	case "", "same-origin", "none":
		return nil
	}
	if (ctx.IsGet() || ctx.IsHead()) && string(h.Peek("Sec-Fetch-Mode")) == "navigate" &&
		(string(path) == "/ui" || bytes.HasPrefix(path, []byte("/ui/"))) {
		return nil
	}
	return errCrossSite
}

// sameOrigin reports whether a browser's request comes from a page of
// this host: it has no Origin (browsers send one with every POST, and
// with cross-origin reads) or one whose host is the one asked, directly
// or (behind a reverse proxy) as X-Forwarded-Host. A page elsewhere
// cannot set that header without a preflight, which is refused.
func sameOrigin(ctx *fasthttp.RequestCtx) bool {
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return true
	}
	var host []byte
	switch {
	case hasPrefixFold(origin, "http://"):
		host = origin[len("http://"):]
	case hasPrefixFold(origin, "https://"):
		host = origin[len("https://"):]
	default:
		return false // "null", or not an origin
	}
	if len(host) == 0 || bytes.ContainsAny(host, "/?#@") {
		return false
	}
	fwd := ctx.Request.Header.Peek("X-Forwarded-Host")
	return bytes.EqualFold(host, ctx.Host()) || (len(fwd) > 0 && bytes.EqualFold(host, fwd))
}

// credentialHeaders are where clients put a key: OpenAI's SDKs and curl
// in Authorization, Anthropic's in x-api-key, Azure OpenAI's in api-key.
var credentialHeaders = [...]string{"Authorization", "X-Api-Key", "Api-Key"}

// hasKey reports whether the request carries one of keys (any request
// does, when there are none), in any of credentialHeaders. Keys are
// compared in constant time and never logged.
func hasKey(h *fasthttp.RequestHeader, keys []string) bool {
	if len(keys) == 0 {
		return true
	}
	for _, name := range credentialHeaders {
		if v := h.Peek(name); len(v) > 0 && holdsKey(name, v, keys) {
			return true
		}
	}
	return false
}

// holdsKey reports whether the value of credential header name is one of
// keys. Authorization takes "Bearer KEY" (any case) and Basic with the key
// as the password (or as the user, with no password: curl -u KEY:); the
// others, the key itself.
func holdsKey(name string, v []byte, keys []string) bool {
	v = bytes.TrimSpace(v)
	if name != "Authorization" {
		return oneOf(v, keys)
	}
	scheme, cred, ok := bytes.Cut(v, []byte(" "))
	if !ok {
		return false
	}
	cred = bytes.TrimSpace(cred)
	switch {
	case equalFold(scheme, "bearer"):
		return oneOf(cred, keys)
	case equalFold(scheme, "basic"):
		var buf [512]byte
		if base64.StdEncoding.DecodedLen(len(cred)) > len(buf) {
			return false
		}
		n, err := base64.StdEncoding.Decode(buf[:], cred)
		if err != nil {
			return false
		}
		user, pass, _ := bytes.Cut(buf[:n], []byte(":"))
		if len(pass) == 0 {
			return oneOf(user, keys)
		}
		return oneOf(pass, keys)
	}
	return false
}

// forBackend makes the headers of a request to model's backend: hotswap's
// own credentials (any header holding one of its keys, and the status
// page's cookie) are taken out, and the model's own headers put in.
// Without keys, what a client sends in Authorization is not hotswap's and
// goes on: it may be the backend's own key.
func forBackend(h *fasthttp.RequestHeader, cfg *config.Config, m *config.Model) {
	if len(cfg.APIKeys)+len(cfg.AdminKeys) > 0 {
		for _, name := range credentialHeaders {
			if v := h.Peek(name); len(v) > 0 && (holdsKey(name, v, cfg.APIKeys) || holdsKey(name, v, cfg.AdminKeys)) {
				h.Del(name)
			}
		}
	}
	if len(h.Peek("Cookie")) > 0 && len(h.Cookie(sessionCookie)) > 0 {
		h.DelCookie(sessionCookie)
	}
	if m != nil {
		for _, hd := range m.Headers {
			h.Set(hd.Name, hd.Value)
		}
	}
}
