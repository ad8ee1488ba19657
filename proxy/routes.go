package proxy

import (
	"bytes"
	"errors"
	"strings"

	"github.com/valyala/fasthttp"
)

// Which requests go to a backend is decided by what they name, not by a
// list of endpoints: any request under /v1/ (but hotswap's own
// /v1/models) that names a model is forwarded to that model's backend,
// unchanged but for what the model's params and upstream_model say of a
// JSON body (see shape.go), so that the Responses API, Anthropic's Messages API and
// whatever backends add next work without hotswap knowing them. A request
// names its model in its JSON body's "model", in the "model" field of its
// form, or, failing both, in a ?model= query parameter (GET
// /v1/audio/voices?model=kokoro).

// nativePaths are the paths outside /v1 that backends serve to clients:
// llama.cpp's own API (and its OpenAI endpoints without the /v1 prefix),
// and whisper.cpp's /inference. They are forwarded as /v1 paths are.
var nativePaths = map[string]bool{
	"/completion":       true,
	"/completions":      true,
	"/chat/completions": true,
	"/infill":           true,
	"/embedding":        true,
	"/embeddings":       true,
	"/rerank":           true,
	"/reranking":        true,
	"/tokenize":         true,
	"/detokenize":       true,
	"/apply-template":   true,
	"/props":            true,
	"/inference":        true,
}

// postEndpoints are the OpenAI and Anthropic endpoints that take a POST
// with a body: a request without one is told the method to use, not that
// the path is unknown.
var postEndpoints = map[string]bool{
	"/v1/chat/completions":      true,
	"/v1/completions":           true,
	"/v1/embeddings":            true,
	"/v1/responses":             true,
	"/v1/messages":              true,
	"/v1/messages/count_tokens": true,
	"/v1/audio/transcriptions":  true,
	"/v1/audio/translations":    true,
	"/v1/audio/speech":          true,
	"/v1/images/generations":    true,
	"/v1/images/edits":          true,
	"/v1/images/variations":     true,
	"/v1/rerank":                true,
	"/v1/moderations":           true,
}

// forwardable reports whether requests for path may go to a backend.
func forwardable(path []byte) bool {
	return bytes.HasPrefix(path, []byte("/v1/")) || nativePaths[string(path)]
}

// requestModel reads the model a request names, whether it asks for a
// stream, and whether its body is a JSON object (valid, so that it may be
// shaped). The name may alias the request's buffers (see jsonModel). Its
// errors are the client's: a body that is not what its content type
// says, or no model anywhere.
func requestModel(ctx *fasthttp.RequestCtx) (model string, stream, object bool, err error) {
	body := ctx.PostBody()
	ct := ctx.Request.Header.ContentType()
	switch {
	case len(body) == 0:
	case hasPrefixFold(ct, "multipart/form-data"):
		if model, err = formModel(string(ct), body); err != nil && !errors.Is(err, errNoModel) {
			return "", false, false, badRequest("invalid_request", err.Error())
		}
	case looksJSON(ct, body):
		if model, stream, err = jsonModel(body); err != nil && !errors.Is(err, errNoModel) {
			return "", false, false, badRequest("invalid_json", err.Error())
		}
		object = true
	case hasPrefixFold(ct, "application/x-www-form-urlencoded"):
		model = string(ctx.PostArgs().Peek("model"))
	}
	if model == "" {
		model = string(ctx.QueryArgs().Peek("model"))
	}
	if model != "" {
		return model, stream, object, nil
	}
	path := ctx.Path()
	switch {
	case len(body) > 0:
		return "", false, false, &apiError{Status: 400, Type: "invalid_request_error", Code: "missing_model",
			Message: "you must provide a model parameter (the body's \"model\", a form field or ?model=)"}
	case postEndpoints[string(path)] && !ctx.IsPost():
		return "", false, false, methodNotAllowed("POST")
	case ctx.IsPost() || ctx.IsPut() || ctx.IsPatch():
		return "", false, false, badRequest("invalid_request", "request body is empty; expected a JSON object with a model")
	}
	return "", false, false, unknownPath(string(path))
}

// looksJSON reports whether a body is to be read as JSON: it says so, or
// it starts like a JSON object or array whatever it says (curl -d sends
// JSON as a form, browsers' fetch as text/plain).
func looksJSON(contentType, body []byte) bool {
	if bytes.Contains(contentType, []byte("json")) {
		return true
	}
	i := skipSpace(body, 0)
	return i < len(body) && (body[i] == '{' || body[i] == '[')
}

// hasPrefixFold is bytes.HasPrefix ignoring ASCII case, without the copy
// that lower-casing the header would make.
func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

func unknownPath(path string) *apiError {
	return &apiError{Status: 404, Type: "invalid_request_error", Code: "not_found",
		Message: "unknown path " + clip(path) + ": hotswap serves /v1/models and /health itself, and forwards requests " +
			"under /v1/ (and llama.cpp's own paths) that name a model in their body or a ?model= parameter"}
}
