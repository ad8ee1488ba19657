// Package proxy is hotswap's HTTP front: it reads which model a request is
// for, has the router hand it a ready backend, and forwards the request,
// streaming the answer back as the backend produces it. Every error a client
// sees is in OpenAI's format.
package proxy

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/session"
	"github.com/hotswap/hotswap/swapper"
)

// Router queues requests and hands out ready backends.
type Router interface {
	Enqueue(ctx context.Context, model string) (*router.Ticket, error)
	Stats(model string) *router.Stats
}

// StatusFunc reports a model's backend state, for /v1/models.
type StatusFunc func(model string) (swapper.Status, bool)

// Options configure a Server.
type Options struct {
	Config *config.Config
	Router Router
	Status StatusFunc // optional
	Log    *zap.Logger
	// Admin serves /admin/*; nil leaves it out.
	Admin Admin
	// Events feeds /admin/events; nil leaves it out.
	Events *events.Hub
	// Metrics counts requests and serves /metrics; nil leaves it out.
	Metrics Metrics
	// EndpointMetrics serves GET /metrics/endpoint, the figures an
	// endpoint picker scrapes (see endpoint_picker); nil leaves it out.
	EndpointMetrics fasthttp.RequestHandler
	// SessionFile keeps the status page's signed-out sessions, so that a
	// restart does not bring them back; "" keeps them in memory.
	SessionFile string
	// Clock is the time Retry-After (from the swapper's back-off) and the
	// status page's sessions go by: the one the router and swapper are
	// given, so that their times and the proxy's agree. nil is the real
	// clock.
	Clock clock.Clock
}

// Server is the proxy. Serve it with Serve; stop it with Shutdown.
type Server struct {
	// conf is the configuration now: a reload replaces it. What fasthttp
	// and the listener were built with (the server section, max_body)
	// keeps its first value.
	conf atomic.Pointer[config.Config]
	// shapes are the configuration's request rules, compiled: they follow
	// conf (see shapePlan for the moment between the two).
	shapes atomic.Pointer[shapePlans]
	// server and maxBody are the first configuration's: the listener and
	// fasthttp were built with them, and a reload does not change them.
	server  config.Server
	maxBody int64
	// bodies are upstreamBodies for reuse: every forwarded request needs
	// one, and fasthttp is done with it once it has closed it.
	bodies  sync.Pool
	router  Router
	status  StatusFunc
	log     *zap.Logger
	clock   clock.Clock
	created int64
	srv     *fasthttp.Server
	// done is closed by Shutdown: long-lived answers (event streams) end,
	// and answers cut short from then on say hotswap is shutting down.
	done       chan struct{}
	closeDone  sync.Once
	admin      Admin
	events     *events.Hub
	metrics    Metrics
	variants   VariantMetrics // metrics, when they count variants
	endpoint   fasthttp.RequestHandler
	background sync.WaitGroup // loads not waited for
	// budget bounds the request bodies held at once (server.body_memory).
	budget bodyBudget
	// ownNames are the names besides addresses and loopback names that
	// the Host may give (see hostAllowed).
	ownNames []string
	sessions *session.Store

	mu      sync.Mutex
	clients map[string]*upstreamClient // by model id
	ln      *listener
	// pickerSrv serves /metrics/endpoint alone, on pickerLn
	// (endpoint_picker.listen).
	pickerSrv *fasthttp.Server
	pickerLn  net.Listener
}

// New returns a Server.
func New(opts Options) *Server {
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	c := clock.Or(opts.Clock)
	s := &Server{
		router:   opts.Router,
		status:   opts.Status,
		log:      log,
		clock:    c,
		created:  c.Now().Unix(),
		clients:  make(map[string]*upstreamClient),
		done:     make(chan struct{}),
		admin:    opts.Admin,
		events:   opts.Events,
		metrics:  opts.Metrics,
		endpoint: opts.EndpointMetrics,
	}
	s.conf.Store(opts.Config)
	s.shapes.Store(compileShapes(opts.Config))
	s.variants, _ = opts.Metrics.(VariantMetrics)
	s.setVariants(opts.Config)
	s.server, s.maxBody = opts.Config.Server, opts.Config.MaxBody
	s.budget.limit = opts.Config.Server.BodyMemory
	s.ownNames = ownNames(opts.Config.Listen)
	sessions, err := session.Open(opts.SessionFile, c)
	if err != nil {
		log.Warn("signed-out status page sessions are not known: they are good again until they expire", zap.Error(err))
	}
	s.sessions = sessions
	s.srv = &fasthttp.Server{
		Handler:            s.Handle,
		ErrorHandler:       s.handleParseError,
		Name:               "hotswap",
		MaxRequestBodySize: int(opts.Config.MaxBody),
		// Uploads (audio, images) can be large; headers are not: larger
		// ones get 431.
		ReadBufferSize: maxHeaderBytes,
		// The request line and headers must come within HeaderTimeout,
		// the body at BodyMinRate (see bodyDeadline); answers have
		// StallTimeout per write (see clientConn), not a deadline for the
		// whole, since a stream may rightly last many minutes.
		ReadTimeout:                  opts.Config.Server.HeaderTimeout,
		HeaderReceived:               s.bodyDeadline,
		ExpectHandler:                s.expect,
		IdleTimeout:                  opts.Config.Server.IdleTimeout,
		NoDefaultServerHeader:        false,
		DisablePreParseMultipartForm: true,
		// The handler reads the body, once the request has passed the
		// gate and within the budget (see readBody).
		StreamRequestBody: true,
		CloseOnShutdown:   true,
		// A connection holds its read buffer only while it reads a request
		// and its write buffer while it writes an answer: a thousand
		// streams, or idle keep-alive clients, do not each keep both.
		ReduceMemoryUsage: true,
		Logger:            fasthttpLogger{log.Named("http")},
	}
	return s
}

func (s *Server) config() *config.Config { return s.conf.Load() }

// Config is the configuration it serves with now (the last reload's).
func (s *Server) Config() *config.Config { return s.conf.Load() }

// Reconfigure serves with cfg from now on: keys, aliases, models and
// scheduling settings apply to the next request. A model whose upstream
// keep-alive changed gets new connections.
func (s *Server) Reconfigure(cfg *config.Config) {
	old := s.conf.Swap(cfg)
	s.shapes.Store(compileShapes(cfg))
	s.setVariants(cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, c := range s.clients {
		m, o := cfg.Models[id], old.Models[id]
		if m == nil || o == nil || m.UpstreamKeepalive != o.UpstreamKeepalive {
			c.hc.CloseIdleConnections()
			delete(s.clients, id)
		}
	}
}

// maxHeaderBytes bounds a request's line and headers.
const maxHeaderBytes = 16 << 10

// Serve accepts connections on ln until Shutdown, within the limits of the
// configuration's server section.
func (s *Server) Serve(ln net.Listener) error {
	sc := s.server
	conns, perIP, files := connLimits(sc.MaxConns, sc.MaxConnsPerIP)
	s.log.Info("client connections limited", zap.Int("max_conns", conns), zap.Int("max_conns_per_ip", perIP),
		zap.Uint64("open_file_limit", files))
	if files > 0 && uint64(conns)*2+fdReserve > files {
		s.log.Warn("max_conns leaves too few files for the connections to backends; past the file limit, "+
			"connections wait to be accepted", zap.Int("max_conns", conns), zap.Uint64("open_file_limit", files))
	}
	l := newListener(ln, s.log.Named("http"), conns, perIP, sc.StallTimeout)
	if host := hostName([]byte(ln.Addr().String())); len(host) > 0 && !isIPLiteral(host) {
		s.ownNames = append(s.ownNames, strings.ToLower(string(host)))
	}
	s.mu.Lock()
	s.ln = l
	s.mu.Unlock()
	return s.srv.Serve(l)
}

// Shutdown stops accepting connections and waits for handlers to return.
// Answers cut short from now on say that hotswap is shutting down.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeDone.Do(func() { close(s.done) })
	s.mu.Lock()
	picker, pickerLn := s.pickerSrv, s.pickerLn
	s.mu.Unlock()
	if picker != nil {
		// Closed here too, in case its Serve had not begun: it then
		// returns at its first Accept.
		_ = pickerLn.Close()
		_ = picker.ShutdownWithContext(ctx) // its answers are short; the main server's error says more
	}
	err := s.srv.ShutdownWithContext(ctx)
	s.background.Wait()
	s.mu.Lock()
	l := s.ln
	s.mu.Unlock()
	if l != nil {
		l.wait(ctx.Done())
	}
	return err
}

// bodyDeadline gives a request, once its headers are in, the time its body
// may take: HeaderTimeout, and its size at BodyMinRate. A body of unknown
// size (chunked) is allowed as long as one of max_body would be.
func (s *Server) bodyDeadline(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	sc := s.server
	size := int64(h.ContentLength())
	if size < 0 {
		size = s.maxBody
	}
	d := sc.HeaderTimeout
	if sc.BodyMinRate > 0 {
		d += time.Duration(float64(size) / float64(sc.BodyMinRate) * float64(time.Second))
	}
	return fasthttp.RequestConfig{ReadTimeout: d}
}

// expect answers "Expect: 100-continue": a request the gate refuses, or
// whose body is declared larger than max_body, is answered before the
// client sends its body.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	ae := s.gate(ctx, ctx.Path())
	if ae == nil && ctx.Request.Header.ContentLength() > int(s.maxBody) {
		ae = s.tooLarge(s.maxBody)
	}
	if ae != nil {
		s.failUnread(ctx, ae, true)
		return ae.Status
	}
	return fasthttp.StatusContinue
}

func (s *Server) tooLarge(limit int64) *apiError {
	what := "max_body"
	if limit != s.maxBody {
		what = "what this path takes"
	}
	return &apiError{Status: 413, Type: "invalid_request_error", Code: "request_too_large",
		Message: "request body is larger than " + what + " (" + config.FormatSize(limit) + ")"}
}

// Handle serves one request. The path stays fasthttp's bytes on the way
// to a backend (the hot path allocates nothing for it); the other routes
// take it as a string. Nothing reads the body before the gate has let the
// request in.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	if ae := s.gate(ctx, path); ae != nil {
		s.fail(ctx, "", ae)
		if forwardable(path) || isOllama(path) || isLlamaModels(path) {
			// An allowed page reads why (a 401, say).
			s.corsHeaders(ctx)
		}
		return
	}
	switch {
	case string(path) == "/health":
		s.handleHealth(ctx)
	case bytes.HasPrefix(path, []byte("/admin/")):
		s.handleAdmin(ctx, string(path))
	case string(path) == "/ui" || bytes.HasPrefix(path, []byte("/ui/")):
		s.handleUI(ctx, path)
	case string(path) == "/metrics" && s.metrics != nil:
		s.handleMetrics(ctx)
	case string(path) == "/metrics/endpoint" && s.endpoint != nil:
		s.handleEndpointMetrics(ctx)
	case bytes.HasPrefix(path, []byte("/upstream/")):
		s.handleUpstream(ctx)
	case isPreflight(ctx) && (isOllama(path) || isLlamaModels(path)):
		s.handlePreflight(ctx)
	case isOllama(path):
		s.handleOllama(ctx, string(path))
		s.corsHeaders(ctx)
	case isLlamaModels(path):
		s.handleLlamaModels(ctx, string(path))
		s.corsHeaders(ctx)
	case llamaDisabled[string(path)]:
		s.fail(ctx, "", errFeatureDisabled)
	case !forwardable(path):
		s.fail(ctx, "", unknownPath(string(path)))
	case isPreflight(ctx):
		s.handlePreflight(ctx)
	default:
		s.handleAPI(ctx, path)
		s.corsHeaders(ctx)
	}
	if !ctx.Response.IsBodyStream() {
		// The answer is whole: the body, if one was read, is done with.
		// A streamed answer lets go of it when it ends.
		s.dropBody(ctx)
	}
}

// handleAPI serves /v1 and the backends' native paths.
func (s *Server) handleAPI(ctx *fasthttp.RequestCtx, path []byte) {
	switch {
	case string(path) == "/v1/models":
		s.handleModels(ctx)
	case string(path) == "/props" && (ctx.IsGet() || ctx.IsHead()) && len(ctx.QueryArgs().Peek("model")) == 0:
		s.handleRouterProps(ctx)
	case string(path) == "/v1/streams/lookup" && ctx.IsPost():
		s.handleStreamLookup(ctx)
	case bytes.HasPrefix(path, []byte("/v1/models/")):
		s.handleModel(ctx, string(path[len("/v1/models/"):]))
	default:
		s.handleForward(ctx)
	}
}

var errUnauthorized = &apiError{Status: 401, Type: "invalid_request_error", Code: "invalid_api_key",
	Message: "missing or invalid API key: send Authorization: Bearer <key> (or x-api-key: <key>)"}

// adminKeys are the keys of /admin and /metrics: admin_keys, or api_keys
// when there are none.
func (s *Server) adminKeys() []string {
	cfg := s.config()
	if len(cfg.AdminKeys) > 0 {
		return cfg.AdminKeys
	}
	return cfg.APIKeys
}

// oneOf reports whether key is one of keys, comparing in constant time.
func oneOf(key []byte, keys []string) bool {
	for _, k := range keys {
		if subtle.ConstantTimeCompare(key, []byte(k)) == 1 {
			return true
		}
	}
	return false
}

// handleParseError answers requests fasthttp could not read. Its errors
// quote what it read, the client's key at times: the answer and the log
// say what was wrong in hotswap's own words.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.failUnread(ctx, s.tooLarge(s.maxBody), true)
	case errors.As(err, &small) || errors.Is(err, fasthttp.ErrSmallReadBuffer):
		s.failUnread(ctx, &apiError{Status: 431, Type: "invalid_request_error", Code: "request_header_fields_too_large",
			Message: "the request line and headers are larger than " + config.FormatSize(maxHeaderBytes)}, false)
	case errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout():
		s.failUnread(ctx, errSlowRequest, false)
	default:
		s.failUnread(ctx, badRequest("malformed_request", "malformed HTTP request: "+describeParseError(err)), false)
	}
}

func (s *Server) handleHealth(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"status":"ok"}`)
}

// modelObject is one entry of GET /v1/models: a model, or a variant of
// one. The fields after owned_by are hotswap's own; OpenAI clients ignore
// them.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// What the configuration says of it, for people choosing a model.
	Name         string          `json:"name,omitempty"`
	Description  string          `json:"description,omitempty"`
	Capabilities []string        `json:"capabilities,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	// VariantOf is, for a variant, the model whose backend serves it (the
	// state and figures below are that backend's); Variants are a model's
	// listed variants.
	VariantOf string   `json:"variant_of,omitempty"`
	Variants  []string `json:"variants,omitempty"`
	Aliases   []string `json:"aliases,omitempty"`
	Kind      string   `json:"kind,omitempty"`
	State     string   `json:"state,omitempty"`
	// Status is llama.cpp's router status of the model (see
	// llamarouter.go): llama.cpp's web UI and Open WebUI read it here.
	Status *llamaStatus `json:"status,omitempty"`
	// What the swapper knows of it: where it runs, what it is planned to
	// need (declared, raised to what it was measured to use) and what it
	// uses now.
	Pid      int          `json:"pid,omitempty"`
	InFlight int          `json:"in_flight"`
	Queued   int64        `json:"queued"`
	Device   string       `json:"device,omitempty"`
	Need     *memoryBytes `json:"need,omitempty"`
	Usage    *memoryBytes `json:"usage,omitempty"`
}

type memoryBytes struct {
	RAM  int64 `json:"ram"`
	VRAM int64 `json:"vram"`
}

// modelObject describes m, or its variant v when v is not nil.
func (s *Server) modelObject(m *config.Model, v *config.Variant) modelObject {
	o := modelObject{ID: m.ID, Object: "model", Created: s.created, OwnedBy: "hotswap",
		Aliases: m.Aliases, Kind: m.Kind}
	info := &m.Info
	if v != nil {
		o.ID, o.Aliases, o.VariantOf, info = v.ID, v.Aliases, m.ID, &v.Info
	} else {
		for _, v := range m.Variants {
			if !v.Unlisted {
				o.Variants = append(o.Variants, v.ID)
			}
		}
	}
	o.Name, o.Description, o.Capabilities = info.Name, info.Description, info.Capabilities
	if len(info.Metadata) > 0 {
		o.Metadata = info.Metadata
	}
	if st := s.router.Stats(m.ID); st != nil {
		o.Queued = st.Queued.Load()
	}
	if s.status != nil {
		if st, ok := s.status(m.ID); ok {
			o.State = st.State.String()
			ls, _ := s.llamaStatusOf(m.ID)
			o.Status = &ls
			o.Pid, o.InFlight, o.Device = st.Pid, st.InFlight, st.Device
			o.Need = &memoryBytes{RAM: st.Need.RAM, VRAM: st.Need.VRAM}
			if st.Pid != 0 {
				o.Usage = &memoryBytes{RAM: st.Usage.RAM, VRAM: st.Usage.TotalVRAM()}
			}
		}
	}
	return o
}

func (s *Server) handleModels(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		s.fail(ctx, "", methodNotAllowed("GET"))
		return
	}
	cfg := s.config()
	list := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list", Data: make([]modelObject, 0, len(cfg.ModelIDs))}
	// Each model, then its variants; unlisted ones are left out (they are
	// served all the same).
	for _, id := range cfg.ModelIDs {
		m := cfg.Models[id]
		if !m.Unlisted {
			list.Data = append(list.Data, s.modelObject(m, nil))
		}
		for _, v := range m.Variants {
			if !v.Unlisted {
				list.Data = append(list.Data, s.modelObject(m, v))
			}
		}
	}
	s.writeJSON(ctx, list)
}

func (s *Server) handleModel(ctx *fasthttp.RequestCtx, name string) {
	if !ctx.IsGet() && !ctx.IsHead() {
		s.fail(ctx, "", methodNotAllowed("GET"))
		return
	}
	m, v, ok := s.config().Lookup(name)
	if !ok {
		s.fail(ctx, name, s.unknownModel(name))
		return
	}
	s.writeJSON(ctx, s.modelObject(m, v))
}

func (s *Server) writeJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(ctx, "", err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func methodNotAllowed(allow string) *apiError {
	return &apiError{Status: 405, Type: "invalid_request_error", Code: "method_not_allowed",
		Message: "method not allowed; use " + allow}
}

// unknownModel refuses a name no model goes by, naming those /v1/models
// lists.
func (s *Server) unknownModel(name string) error {
	cfg := s.config()
	var known []string
	for _, id := range cfg.ModelIDs {
		m := cfg.Models[id]
		if !m.Unlisted {
			known = append(known, id)
		}
		for _, v := range m.Variants {
			if !v.Unlisted {
				known = append(known, v.ID)
			}
		}
	}
	return &apiError{Status: 404, Type: "invalid_request_error", Code: "model_not_found",
		Message: "the model `" + clip(name) + "` does not exist; known models: " + strings.Join(known, ", ")}
}

// fail answers with err and logs the request. A key of hotswap's that
// the message echoes (a client put it in a model name or path) is
// redacted.
func (s *Server) fail(ctx *fasthttp.RequestCtx, model string, err error) {
	ae := toAPIError(err, s.clock)
	if s.mentionsKey([]byte(ae.Message)) {
		clean := *ae
		clean.Message = s.redactKeys(ae.Message)
		ae = &clean
	}
	writeError(ctx, ae)
	s.logRequest(ctx, model, ae.Status, len(ctx.Response.Body()), ae)
}

// failUnread answers a request fasthttp could not read, or refused to read
// the body of, and logs it with what is known of it: who sent it, and its
// method and path only if its headers were read.
func (s *Server) failUnread(ctx *fasthttp.RequestCtx, ae *apiError, headersRead bool) {
	writeError(ctx, ae)
	if s.metrics != nil {
		s.metrics.Request("", "other", ae.Status, 0)
	}
	fields := []zap.Field{zap.String("from", ctx.RemoteAddr().String()), zap.Int("status", ae.Status), zap.Error(ae)}
	// fasthttp resets a request whose body it could not read (a chunked
	// body that grew too large): then its headers are gone too.
	if headersRead && len(ctx.Request.Header.RawHeaders()) > 0 {
		// Copied: fasthttp reuses these buffers, and this path is not hot.
		fields = append(fields, zap.String("method", string(ctx.Method())), zap.String("path", clip(string(ctx.Path()))))
	}
	s.log.Info("request", fields...)
}

// logRequest writes the one line each request gets. Failures of hotswap or
// a backend are warnings; a client's own mistakes are not.
func (s *Server) logRequest(ctx *fasthttp.RequestCtx, model string, status, bytes int, err error) {
	s.logLine(ctx, model, status, bytes, err, zap.InfoLevel)
}

// logRead is logRequest for a look at hotswap itself that succeeded (the
// admin API's reads, the status page): pages and scrapers ask every few
// seconds, and their lines would bury the requests' own, so they are
// logged at debug. The handlers that serve them say so, so that the
// proxy's own path does not look.
func (s *Server) logRead(ctx *fasthttp.RequestCtx, status, bytes int) {
	level := zap.InfoLevel
	if status < 400 && (ctx.IsGet() || ctx.IsHead()) {
		level = zap.DebugLevel
	}
	s.logLine(ctx, "", status, bytes, nil, level)
}

// logLine counts a request and logs it at level, or as a warning when
// hotswap or a backend failed it.
func (s *Server) logLine(ctx *fasthttp.RequestCtx, model string, status, bytes int, err error, level zapcore.Level) {
	// Real time: fasthttp stamps ctx.Time() with the wall clock, and what
	// is measured is real work (I/O, a backend's answer), for logs and
	// metrics; nothing is decided on it.
	took := time.Since(ctx.Time())
	if s.metrics != nil {
		s.metrics.Request(model, endpointLabel(ctx.Path()), status, took)
	}
	if status >= 500 || (err != nil && status < 400) {
		level = zap.WarnLevel
	}
	// Checked first: at a level that does not log requests, the line
	// costs nothing, not even its fields.
	ce := s.log.Check(level, "request")
	if ce == nil {
		return
	}
	// ByteString copies fasthttp's buffers when a line is kept (the event
	// stream keeps it).
	path := clipBytes(ctx.Path())
	if s.mentionsKey(path) || s.mentionsKey([]byte(model)) {
		path, model = []byte(s.redactKeys(string(path))), s.redactKeys(model)
	}
	fields := [7]zap.Field{
		zap.ByteString("method", ctx.Method()),
		zap.ByteString("path", path),
		zap.String("model", clip(model)),
		zap.Int("status", status),
		zap.Int("bytes", bytes),
		zap.Duration("took", took),
	}
	n := 6
	if err != nil {
		fields[n] = zap.Error(err)
		n++
	}
	ce.Write(fields[:n]...)
}

// fasthttpLogger sends fasthttp's own messages (connection errors, mostly
// clients that went away) to the debug log: each is also answered to the
// client, and the request line says what happened.
// Its errors quote what the client sent (a key among it): they are
// cut short before the quote.
type fasthttpLogger struct{ log *zap.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	if !l.log.Core().Enabled(zap.DebugLevel) {
		return
	}
	for i, a := range args {
		switch v := a.(type) {
		case error:
			args[i] = safeError(v)
		case string:
			args[i] = redactCredentials(v)
		}
	}
	l.log.Debug(redactCredentials(fmt.Sprintf(format, args...)))
}
