package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Browsers call the API from pages on other origins (chat front ends
// served from their own port) only if the API says so: cors_origins lists
// the origins that may, "*" any. A preflight (OPTIONS with
// Access-Control-Request-Method) is answered here, without an API key,
// since browsers send none with it; the request that follows needs one as
// usual. The backends' own CORS headers are replaced by hotswap's, so
// that an origin hotswap does not allow is not let in by a backend that
// allows any.

// corsPreflightMaxAge is how long a browser may reuse a preflight answer.
const corsPreflightMaxAge = "600"

// corsAllowed returns the Access-Control-Allow-Origin value for origin,
// or nil if origin may not call the API.
func (s *Server) corsAllowed(origin []byte) []byte {
	if len(origin) == 0 {
		return nil
	}
	for _, o := range s.config().CORSOrigins {
		if o == "*" {
			return []byte("*")
		}
		if string(origin) == o {
			return origin
		}
	}
	return nil
}

// isPreflight reports whether the request is a CORS preflight.
func isPreflight(ctx *fasthttp.RequestCtx) bool {
	return ctx.IsOptions() && len(ctx.Request.Header.Peek("Access-Control-Request-Method")) > 0
}

// handlePreflight answers a preflight for an API path: 204 with what the
// origin may send, or 403 if it may not call the API.
func (s *Server) handlePreflight(ctx *fasthttp.RequestCtx) {
	allow := s.corsAllowed(ctx.Request.Header.Peek("Origin"))
	if allow == nil {
		s.fail(ctx, "", &apiError{Status: 403, Type: "invalid_request_error", Code: "origin_not_allowed",
			Message: "this origin may not call the API from a browser; add it to cors_origins"})
		return
	}
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
	if req := ctx.Request.Header.Peek("Access-Control-Request-Headers"); len(req) > 0 {
		h.SetBytesV("Access-Control-Allow-Headers", req)
	} else {
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	}
	h.Set("Access-Control-Max-Age", corsPreflightMaxAge)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	setCORS(h, allow)
	s.logRequest(ctx, "", fasthttp.StatusNoContent, 0, nil)
}

// corsAnswerHeaders are the CORS headers of an answer: on the API, a
// backend's are replaced by hotswap's (see corsHeaders).
var corsAnswerHeaders = []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers"}

// corsHeaders puts hotswap's CORS headers on an API answer in place of
// any the backend sent. It runs once the handler has returned: a streamed
// answer's headers are not written before then. Only a browser's request
// (it has an Origin) needs them: others are left as they are, at the cost
// of one look at the request's headers.
func (s *Server) corsHeaders(ctx *fasthttp.RequestCtx) {
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return
	}
	for _, h := range corsAnswerHeaders {
		ctx.Response.Header.Del(h)
	}
	if allow := s.corsAllowed(origin); allow != nil {
		setCORS(&ctx.Response.Header, allow)
	}
}

func setCORS(h *fasthttp.ResponseHeader, allow []byte) {
	h.SetBytesV("Access-Control-Allow-Origin", allow)
	if !bytes.Equal(allow, []byte("*")) {
		h.Add("Vary", "Origin")
	}
	// Clients read these (the queue's Retry-After, the backend's model).
	h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
}
