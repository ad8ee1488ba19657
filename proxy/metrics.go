package proxy

import (
	"bytes"
	"net"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/metrics"
	"github.com/hotswap/hotswap/router"
)

// Metrics is told of every request the proxy answers, and serves /metrics.
type Metrics interface {
	Request(model, endpoint string, status int, took time.Duration)
	// Waited is how long a request waited for its backend: cause is
	// "queued" (its turn) or "loading" (its model's start).
	Waited(model, cause string, took time.Duration)
	Handler() fasthttp.RequestHandler
}

// VariantMetrics are Metrics that count the requests that name a variant,
// under its model.
type VariantMetrics interface {
	// SetVariants says which variants each model has (model id to
	// variant ids), at the start and after a reload: the variant label
	// takes those values only.
	SetVariants(variants map[string][]string)
	// Variant counts a request for variant, served by model.
	Variant(model, variant string)
}

// setVariants tells the metrics the variants cfg declares.
func (s *Server) setVariants(cfg *config.Config) {
	if s.variants == nil {
		return
	}
	vs := make(map[string][]string)
	for _, id := range cfg.ModelIDs {
		for _, v := range cfg.Models[id].Variants {
			vs[id] = append(vs[id], v.ID)
		}
	}
	s.variants.SetVariants(vs)
}

// Historian keeps the recent traffic that GET /admin/history serves (and
// the status page plots); Metrics that are one serve it.
type Historian interface {
	History() metrics.History
}

func (s *Server) adminHistory(ctx *fasthttp.RequestCtx) {
	h, ok := s.metrics.(Historian)
	if !ok {
		s.fail(ctx, "", unknownPath("/admin/history"))
		return
	}
	s.adminAnswer(ctx, h.History(), nil)
}

func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		s.fail(ctx, "", methodNotAllowed("GET"))
		return
	}
	s.metrics.Handler()(ctx)
}

func (s *Server) handleEndpointMetrics(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		s.fail(ctx, "", methodNotAllowed("GET"))
		return
	}
	s.endpoint(ctx)
	// Counted (endpoint="metrics_endpoint"), so that an operator sees the
	// picker scrape, and logged at debug: it asks every second.
	s.logRead(ctx, ctx.Response.StatusCode(), len(ctx.Response.Body()))
}

// ServeEndpointMetrics serves GET /metrics/endpoint, and nothing else,
// without a key, on ln (endpoint_picker.listen) until Shutdown: an
// endpoint picker's scraper reads it there, on an address only it
// reaches, whatever keys the main listener asks for.
func (s *Server) ServeEndpointMetrics(ln net.Listener) error {
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) != "/metrics/endpoint" || s.endpoint == nil {
				s.fail(ctx, "", &apiError{Status: 404, Type: "invalid_request_error", Code: "not_found",
					Message: "unknown path " + clip(string(ctx.Path())) + ": this listener (endpoint_picker.listen) serves /metrics/endpoint only"})
				return
			}
			s.handleEndpointMetrics(ctx)
		},
		Name: "hotswap",
		// A scrape is a GET with no body, every second or so.
		ReadTimeout:        s.server.HeaderTimeout,
		WriteTimeout:       time.Minute,
		IdleTimeout:        s.server.IdleTimeout,
		MaxRequestBodySize: 1 << 10,
		Concurrency:        64,
		CloseOnShutdown:    true,
		Logger:             fasthttpLogger{s.log.Named("http")},
	}
	s.mu.Lock()
	s.pickerSrv, s.pickerLn = srv, ln
	s.mu.Unlock()
	select {
	case <-s.done:
		ln.Close()
		return nil // shut down before it began
	default:
	}
	if err := srv.Serve(ln); err != nil {
		select {
		case <-s.done: // closed by Shutdown
		default:
			return err
		}
	}
	return nil
}

// waited records a granted request's wait.
func (s *Server) waited(model string, t *router.Ticket) {
	if s.metrics != nil {
		s.metrics.Waited(model, t.Phase().String(), t.Waited())
	}
}

// endpointNames are the metrics' names of the endpoints hotswap knows.
var endpointNames = func() map[string]string {
	m := map[string]string{"/v1/models": "models", "/metrics": "metrics", "/metrics/endpoint": "metrics_endpoint", "/health": "health"}
	for p := range postEndpoints {
		m[p] = strings.TrimPrefix(p, "/v1/")
	}
	for p := range nativePaths {
		m[p] = strings.TrimPrefix(p, "/")
	}
	// Ollama's and llama.cpp's router's own.
	for _, p := range []string{"/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/tags", "/api/ps",
		"/api/show", "/api/version", "/models", "/models/load", "/models/unload"} {
		m[p] = strings.TrimPrefix(p, "/")
	}
	return m
}()

// endpointLabel names path for metrics, from a fixed set, so that no
// client can make up new series.
func endpointLabel(path []byte) string {
	if name, ok := endpointNames[string(path)]; ok {
		return name
	}
	switch {
	case bytes.HasPrefix(path, []byte("/v1/models/")):
		return "models"
	case bytes.HasPrefix(path, []byte("/upstream/")):
		return "upstream"
	case bytes.HasPrefix(path, []byte("/admin/")):
		return "admin"
	}
	return "other"
}
