package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/control"
	"github.com/hotswap/hotswap/ollama"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// apiError is an error with its HTTP status and OpenAI type and code. Every
// error a client sees is turned into one by toAPIError, the one place where
// errors meet HTTP.
type apiError struct {
	Status     int
	Type       string
	Code       string
	Message    string
	RetryAfter time.Duration // sent as Retry-After when > 0
}

func (e *apiError) Error() string { return e.Message }

func badRequest(code, msg string) *apiError {
	return &apiError{Status: fasthttp.StatusBadRequest, Type: "invalid_request_error", Code: code, Message: msg}
}

// errClientGone marks a request whose client hung up.
var errClientGone = errors.New("the client closed the connection")

// errBackendDied marks an upstream failure on a backend that exited.
var errBackendDied = errors.New("the model's backend exited while handling the request")

// errBackendGone marks a request that found nothing listening on its
// backend's port: it never reached the backend, which is being started
// again, so it may be sent again (see dispatch).
var errBackendGone = errors.New("the model's backend stopped answering (nothing listens on its port) and is started again")

// toAPIError maps any error to what the client is told. c is the clock
// the swapper's RetryAt is on (the server's: one for all of hotswap).
func toAPIError(err error, c clock.Clock) *apiError {
	var ae *apiError
	var be *swapper.BackoffError
	var se *swapper.StartError
	var ie *swapper.InsufficientMemoryError
	var qf *router.QueueFullError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, swapper.ErrUnknownModel):
		return &apiError{Status: 404, Type: "invalid_request_error", Code: "model_not_found", Message: err.Error()}
	case errors.As(err, &ie):
		return &apiError{Status: 503, Type: "server_error", Code: "insufficient_memory", Message: err.Error()}
	case errors.As(err, &be):
		return &apiError{Status: 503, Type: "server_error", Code: "backend_start_failed", Message: err.Error(),
			RetryAfter: be.RetryAt.Sub(c.Now())}
	case errors.As(err, &se):
		return &apiError{Status: 503, Type: "server_error", Code: "backend_start_failed", Message: err.Error(),
			RetryAfter: se.RetryAt.Sub(c.Now())}
	case errors.As(err, &qf):
		return &apiError{Status: 429, Type: "rate_limit_error", Code: "queue_full", Message: err.Error(),
			RetryAfter: qf.RetryAfter}
	case errors.Is(err, router.ErrQueueTimeout):
		return &apiError{Status: 503, Type: "server_error", Code: "queue_timeout", Message: err.Error()}
	case errors.Is(err, control.ErrInvalidConfig):
		return &apiError{Status: 400, Type: "invalid_request_error", Code: "invalid_config", Message: err.Error()}
	case errors.Is(err, control.ErrNoConfigFile):
		return &apiError{Status: 409, Type: "invalid_request_error", Code: "no_config_file", Message: err.Error()}
	case errors.Is(err, control.ErrUnknownMode):
		return &apiError{Status: 404, Type: "invalid_request_error", Code: "mode_not_found", Message: err.Error()}
	case errors.Is(err, control.ErrUnknownDevice):
		return &apiError{Status: 404, Type: "invalid_request_error", Code: "device_not_found", Message: err.Error()}
	case errors.Is(err, control.ErrSuperseded):
		return &apiError{Status: 409, Type: "invalid_request_error", Code: "superseded", Message: err.Error()}
	case errors.Is(err, control.ErrNothingToRestore):
		return &apiError{Status: 409, Type: "invalid_request_error", Code: "nothing_to_restore", Message: err.Error()}
	case errors.Is(err, swapper.ErrUnloaded):
		return &apiError{Status: 503, Type: "server_error", Code: "model_unloaded", Message: err.Error()}
	case errors.Is(err, swapper.ErrDrainTimeout):
		return &apiError{Status: 503, Type: "server_error", Code: "drain_timeout", Message: err.Error()}
	case errors.Is(err, swapper.ErrClosed):
		return &apiError{Status: 503, Type: "server_error", Code: "shutting_down", Message: err.Error()}
	case errors.Is(err, errBackendDied), errors.Is(err, errBackendGone):
		return &apiError{Status: 502, Type: "server_error", Code: "backend_died", Message: err.Error()}
	case errors.Is(err, errUpstream):
		return &apiError{Status: 502, Type: "server_error", Code: "backend_unreachable", Message: err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, errClientGone):
		// The client left; nobody reads this, but the log line shows 499.
		return &apiError{Status: 499, Type: "server_error", Code: "client_closed", Message: err.Error()}
	}
	return &apiError{Status: 500, Type: "server_error", Code: "internal_error", Message: err.Error()}
}

type errorBody struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Param   any    `json:"param"`
		Code    string `json:"code"`
	} `json:"error"`
}

func (e *apiError) body() []byte {
	var b errorBody
	b.Error.Message, b.Error.Type, b.Error.Code = e.Message, e.Type, e.Code
	out, _ := json.Marshal(b)
	return out
}

// retryAfterSeconds is RetryAfter as Retry-After says it: whole seconds,
// rounded up, so that a client never comes back too early.
func (e *apiError) retryAfterSeconds() int { return int(math.Ceil(e.RetryAfter.Seconds())) }

// writeError answers ctx with ae in OpenAI's error format, or in Ollama's
// on Ollama's paths.
func writeError(ctx *fasthttp.RequestCtx, ae *apiError) *apiError {
	ctx.Response.Reset()
	ctx.SetStatusCode(ae.Status)
	ctx.SetContentType("application/json")
	if ae.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(ae.retryAfterSeconds()))
	}
	if isOllama(ctx.Path()) {
		ctx.SetBody(ollama.ErrorBody(ae.Message))
		return ae
	}
	ctx.SetBody(ae.body())
	return ae
}

// maxEcho is the most of a client's own words (a model name, a path) that
// goes back into an answer or a log line: a model name of a megabyte gets
// a short 404, not one of a megabyte, and one log line.
const maxEcho = 200

// clip cuts s to maxEcho bytes (at a character's start), saying so.
func clip(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes, cut)", s[:cut], len(s))
}

// clipBytes is clip for bytes, copying only what is cut.
func clipBytes(b []byte) []byte {
	if len(b) <= maxEcho {
		return b
	}
	return []byte(clip(string(b)))
}
