package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/ollama"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// Ollama's API over hotswap's backends: package ollama translates its
// requests into OpenAI's and the answers back; this file routes them
// through the same keys, queues, memory rules and shaping as /v1, and
// answers errors in Ollama's {"error": "..."} (see writeError).

// isOllama reports whether path is one of Ollama's API paths, whose
// answers and errors are in Ollama's shapes.
func isOllama(path []byte) bool { return bytes.HasPrefix(path, []byte("/api/")) }

// ollamaFiles are Ollama's endpoints for model files, which hotswap does
// not manage: its models are what its configuration says.
var ollamaFiles = map[string]bool{
	"/api/pull": true, "/api/push": true, "/api/create": true, "/api/copy": true, "/api/delete": true,
}

// handleOllama serves Ollama's API.
func (s *Server) handleOllama(ctx *fasthttp.RequestCtx, path string) {
	get := ctx.IsGet() || ctx.IsHead()
	switch {
	case path == "/api/version" && get:
		s.ollamaRead(ctx, ollama.Version())
	case path == "/api/tags" && get:
		s.ollamaRead(ctx, ollama.Tags(s.ollamaModels(false)))
	case path == "/api/ps" && get:
		s.ollamaRead(ctx, ollama.PS(s.ollamaModels(true)))
	case path == "/api/version", path == "/api/tags", path == "/api/ps":
		s.fail(ctx, "", methodNotAllowed("GET"))
	case path == "/api/show":
		s.ollamaShow(ctx)
	case ollamaFiles[path] || strings.HasPrefix(path, "/api/blobs/"):
		s.fail(ctx, "", &apiError{Status: 501, Type: "invalid_request_error", Code: "not_supported",
			Message: "hotswap does not manage model files: its models are the ones its configuration names " +
				"(models: in its config file, each with the command that serves it); add or remove them there and reload"})
	default:
		ep, ok := ollama.EndpointOf(path)
		if !ok {
			s.fail(ctx, "", &apiError{Status: 404, Type: "invalid_request_error", Code: "not_found",
				Message: "unknown path " + clip(path) + ": hotswap serves Ollama's /api/chat, /api/generate, /api/embed, " +
					"/api/embeddings, /api/tags, /api/ps, /api/show and /api/version"})
			return
		}
		if !ctx.IsPost() {
			s.fail(ctx, "", methodNotAllowed("POST"))
			return
		}
		s.ollamaModelRequest(ctx, ep)
	}
}

// ollamaRead answers a look at hotswap in Ollama's terms.
func (s *Server) ollamaRead(ctx *fasthttp.RequestCtx, body []byte) {
	ctx.SetContentType("application/json; charset=utf-8")
	ctx.SetBody(body)
	s.logRead(ctx, fasthttp.StatusOK, len(body))
}

// ollamaModelRequest serves /api/chat, /api/generate, /api/embed and
// /api/embeddings: translated into the OpenAI request the model's backend
// serves, shaped by its params, queued and forwarded as /v1's are.
func (s *Server) ollamaModelRequest(ctx *fasthttp.RequestCtx, ep ollama.Endpoint) {
	if err := s.readBody(ctx, s.maxBody); err != nil {
		s.fail(ctx, "", err)
		return
	}
	req, err := ollama.Parse(ep, ctx.PostBody())
	if err != nil {
		s.fail(ctx, "", badRequest("invalid_request", err.Error()))
		return
	}
	m, v, ok := s.config().Lookup(req.Model)
	if !ok {
		s.fail(ctx, req.Model, s.unknownModel(req.Model))
		return
	}
	if len(req.Ignored) > 0 {
		s.log.Debug("ollama: ignored what OpenAI backends have no word for", zap.String("model", clip(req.Model)),
			zap.Strings("fields", req.Ignored))
	}
	if req.Empty {
		s.ollamaLoad(ctx, m.ID, req)
		return
	}
	body := req.Body
	write := func(dst []byte) []byte { return append(dst, body...) }
	n := len(body)
	if plan := s.shapePlan(m, v); plan != nil {
		if sh, size := plan.shape(body); sh != nil {
			defer sh.done()
			write, n = sh.write, size
		}
	}
	if err := s.replaceBody(ctx, n, write); err != nil {
		s.fail(ctx, m.ID, err)
		return
	}
	h := &ctx.Request.Header
	h.SetContentType("application/json")
	// The answer is translated: it must come as it is.
	h.Del(fasthttp.HeaderAcceptEncoding)
	if v != nil && s.variants != nil {
		s.variants.Variant(m.ID, v.ID)
	}
	tr := &ollamaReply{req: req, a: ollama.NewAnswer(req, ctx.Time(), s.clock.Now)}
	// Ollama's streams carry load progress, as thinking, when the model's
	// load_progress is on; without it a request waits in silence, as with
	// Ollama itself (NDJSON has no comments to keep a stream alive with).
	progress := req.Stream && (ep == ollama.Chat || ep == ollama.Generate) && m.LoadProgress != "" &&
		m.LoadProgress != config.LoadProgressOff
	s.dispatch(ctx, m.ID, "", tr, progress, []byte(req.Path))
}

// ollamaWaiting answers a streamed Ollama request that has to wait for
// its model with NDJSON at once: lines whose thinking says what it waits
// for (see progress), then the backend's answer, translated. As with
// streamWaiting, the status line is sent before the answer is known: what
// goes wrong from here on ends the stream with an {"error": ...} line.
func (s *Server) ollamaWaiting(ctx *fasthttp.RequestCtx, model string, tr *ollamaReply, path []byte, t *router.Ticket, done func()) {
	openStream(ctx, fasthttp.StatusOK, "application/x-ndjson")
	prog := s.newProgress(model, t)
	b := &ollamaWaitingBody{s: s, ctx: ctx, model: model, tr: tr, path: path, t: t, prog: prog,
		done: sync.OnceFunc(func() { done(); prog.close() })}
	text, _ := prog.next() // the first always says something
	b.pending = b.line(text)
	ctx.Response.SetBodyStream(b, -1)
}

// ollamaWaitingBody is a waiting Ollama stream's body: progress lines
// while the request waits, then the backend's answer.
type ollamaWaitingBody struct {
	s     *Server
	ctx   *fasthttp.RequestCtx
	model string
	tr    *ollamaReply
	path  []byte
	t     *router.Ticket
	prog  *progress
	done  func()

	up *ollamaBody // once the backend answers a stream
	waitingOut
	failure error
	status  int
}

// line is a progress line carrying text as thinking.
func (b *ollamaWaitingBody) line(text string) []byte {
	return ollama.ProgressLine(b.tr.req.Endpoint, b.tr.req.Model, text, b.s.clock.Now())
}

func (b *ollamaWaitingBody) Read(p []byte) (int, error) {
	if b.up != nil && len(b.pending) == 0 {
		return b.up.Read(p)
	}
	return b.read(p, b.next)
}

// next waits until there is something to send, and sets pending to it.
func (b *ollamaWaitingBody) next() {
	var lease *router.Lease
	var err error
	for {
		if lease, err = b.t.Next(progressPoll); lease != nil || err != nil {
			break
		}
		if text, ok := b.prog.next(); ok {
			b.pending = b.line(text)
			return
		}
	}
	b.done()
	if err != nil {
		b.fail(err)
		return
	}
	b.s.waited(b.model, b.t)
	b.tr.waited(b.t)
	b.tr.keep(lease)
	resp, err := b.s.roundTrip(b.ctx, b.model, lease, b.path)
	if err != nil {
		b.fail(err)
		return
	}
	b.status = resp.StatusCode()
	ready := b.line(b.prog.ready())
	if r := resp.BodyStream(); r != nil && b.status < 300 && isSSE(resp) {
		b.up = &ollamaBody{s: b.s, ctx: b.ctx, model: b.model, lease: lease, resp: resp, r: r, a: b.tr.a,
			status: b.status, in: make([]byte, 16<<10)}
		b.pending = ready
		return
	}
	// A whole answer (or the backend's refusal): one line.
	body, err := b.s.wholeAnswer(resp, lease)
	if err != nil {
		b.fail(err)
		return
	}
	b.pending = append(append(ready, b.tr.a.Whole(b.status, body)...), '\n')
	b.last = true
}

// fail ends the stream with an {"error": ...} line.
func (b *ollamaWaitingBody) fail(err error) {
	b.failure = err
	ae := toAPIError(err, b.s.clock)
	if b.status == 0 {
		b.status = ae.Status
	}
	b.pending = append(ollama.ErrorBody(ae.Message), '\n')
	b.last = true
}

// Close is called by fasthttp when the answer is sent or the client has
// gone: either way the request's place, slot or backend is given up.
func (b *ollamaWaitingBody) Close() error {
	b.done()
	if b.up != nil {
		b.up.n += b.n
		return b.up.Close()
	}
	b.t.Close()
	b.s.dropBody(b.ctx)
	if b.failure == nil && !b.last {
		b.failure = fmt.Errorf("client gone while waiting for %s: %w", b.model, errClientGone)
		b.status = 499
	}
	b.s.logRequest(b.ctx, b.model, b.status, b.n, b.failure)
	return nil
}

// ollamaLoad serves a request with nothing to answer, which is how
// Ollama's clients load a model (or, with keep_alive 0, unload it): a
// load goes through the model's queue as any request does, and its
// keep_alive applies from then.
func (s *Server) ollamaLoad(ctx *fasthttp.RequestCtx, model string, req *ollama.Request) {
	reason := "load"
	if ka := req.KeepAlive; ka != nil && *ka == 0 {
		reason = "unload"
		if s.admin == nil {
			s.fail(ctx, model, errors.New("unloading needs the control plane, which this server was built without"))
			return
		}
		cmd, done := s.commandContext(ctx)
		err := s.admin.Unload(cmd, model, false)
		done()
		if err != nil {
			s.fail(ctx, model, err)
			return
		}
	} else {
		t, err := s.router.Enqueue(context.Background(), model)
		if err != nil {
			s.fail(ctx, model, err)
			return
		}
		wait, hangup := context.WithCancel(context.Background())
		t.Bind(wait)
		stopWatch := watchHangup(ctx.Conn(), hangup)
		lease, err := t.Next(0)
		stopWatch()
		hangup()
		if err != nil {
			t.Close()
			s.fail(ctx, model, err)
			return
		}
		if req.KeepAlive != nil {
			lease.KeepAlive(*req.KeepAlive)
		}
		lease.Release()
	}
	body := ollama.LoadAnswer(req.Endpoint, req.Model, reason, s.clock.Now())
	ctx.SetContentType("application/json; charset=utf-8")
	ctx.SetBody(body)
	s.logRequest(ctx, model, fasthttp.StatusOK, len(body), nil)
}

// ollamaReply is how an Ollama request's answer is made: its request as
// translated, and the answer's translation.
type ollamaReply struct {
	req *ollama.Request
	a   *ollama.Answer
}

// waited records the request's wait for its model (load_duration).
func (r *ollamaReply) waited(t *router.Ticket) { r.a.SetLoadDuration(t.Waited()) }

// keep gives the lease the request's keep_alive, which applies once it is
// released.
func (r *ollamaReply) keep(l *router.Lease) {
	if r.req.KeepAlive != nil {
		l.KeepAlive(*r.req.KeepAlive)
	}
}

// maxOllamaAnswer bounds a whole answer read to be translated.
const maxOllamaAnswer = 256 << 20

// forwardOllama answers with the backend's answer translated: an event
// stream as NDJSON lines, as they come; a whole answer (or an error) as
// one JSON object.
func (s *Server) forwardOllama(ctx *fasthttp.RequestCtx, model string, tr *ollamaReply, lease *router.Lease, resp *fasthttp.Response) {
	status := resp.StatusCode()
	if r := resp.BodyStream(); r != nil && status < 300 && isSSE(resp) {
		openStream(ctx, status, "application/x-ndjson")
		b := &ollamaBody{s: s, ctx: ctx, model: model, lease: lease, resp: resp, r: r, a: tr.a, status: status,
			in: make([]byte, 16<<10)}
		ctx.Response.SetBodyStream(b, -1)
		return
	}
	body, err := s.wholeAnswer(resp, lease)
	if err != nil {
		s.fail(ctx, model, err)
		return
	}
	out := tr.a.Whole(status, body)
	ctx.SetStatusCode(status)
	if tr.req.Stream && status < 300 {
		// A stream of one line: the backend answered whole.
		ctx.SetContentType("application/x-ndjson")
		out = append(out, '\n')
	} else {
		ctx.SetContentType("application/json; charset=utf-8")
	}
	ctx.SetBody(out)
	s.logRequest(ctx, model, status, len(out), nil)
}

// wholeAnswer reads a backend's answer whole (up to maxOllamaAnswer), to
// be translated, and lets go of the answer and the backend.
func (s *Server) wholeAnswer(resp *fasthttp.Response, lease *router.Lease) ([]byte, error) {
	var body []byte
	var err error
	if r := resp.BodyStream(); r != nil {
		body, err = io.ReadAll(io.LimitReader(r, maxOllamaAnswer))
	} else {
		body = append(body, resp.Body()...)
	}
	if err != nil {
		err = s.upstreamErr(lease, err)
	}
	_ = resp.CloseBodyStream()
	fasthttp.ReleaseResponse(resp)
	lease.Release()
	return body, err
}

// ollamaBody is a streamed answer translated into Ollama's NDJSON as the
// backend's events arrive.
type ollamaBody struct {
	s      *Server
	ctx    *fasthttp.RequestCtx
	model  string
	lease  *router.Lease
	resp   *fasthttp.Response
	r      io.Reader
	a      *ollama.Answer
	status int

	in      []byte // what is read from the backend
	buf     []byte // translated; the client has read it up to off
	off     int
	ended   bool
	n       int
	failure error
}

func (b *ollamaBody) Read(p []byte) (int, error) {
	for b.off == len(b.buf) {
		if b.ended {
			return 0, io.EOF
		}
		k, err := b.r.Read(b.in)
		b.buf, b.off = b.a.Feed(b.buf[:0], b.in[:k]), 0
		switch {
		case err == io.EOF:
			b.buf, b.ended = b.a.End(b.buf, nil), true
		case err != nil:
			b.failure = b.s.upstreamErr(b.lease, err)
			b.buf, b.ended = b.a.End(b.buf, b.failure), true
		}
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	b.n += n
	return n, nil
}

// Close is called by fasthttp when the answer is sent or the client has
// gone: the backend is given back.
func (b *ollamaBody) Close() error {
	b.s.endStream(b.ctx, b.model, b.resp, b.lease, b.status, b.n, b.failure, b.ended)
	return nil
}

// ollamaShow serves /api/show: what hotswap knows of one model.
func (s *Server) ollamaShow(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() && !ctx.IsGet() {
		s.fail(ctx, "", methodNotAllowed("POST"))
		return
	}
	if err := s.readBody(ctx, 64<<10); err != nil {
		s.fail(ctx, "", err)
		return
	}
	var q struct {
		Model string `json:"model"`
		Name  string `json:"name"` // what older clients send
	}
	if len(ctx.PostBody()) > 0 {
		if err := json.Unmarshal(ctx.PostBody(), &q); err != nil {
			s.fail(ctx, "", badRequest("invalid_json", "the body is not a JSON object: "+err.Error()))
			return
		}
	}
	name := q.Model
	if name == "" {
		name = q.Name
	}
	if name == "" {
		s.fail(ctx, "", badRequest("missing_model", "name the model: {\"model\": \"...\"}"))
		return
	}
	m, v, ok := s.config().Lookup(name)
	if !ok {
		s.fail(ctx, name, s.unknownModel(name))
		return
	}
	s.ollamaRead(ctx, ollama.Show(s.ollamaInfo(m, v, name)))
}

// ollamaModels lists the models clients see (/api/tags): every listed
// model, its aliases and listed variants, each under the name a client
// would use; with loaded, only those whose backend is loaded (/api/ps).
func (s *Server) ollamaModels(loaded bool) []ollama.ModelInfo {
	cfg := s.config()
	var out []ollama.ModelInfo
	for _, id := range cfg.ModelIDs {
		m := cfg.Models[id]
		if loaded && s.status != nil {
			if st, ok := s.status(id); !ok || (st.State != swapper.Ready && st.State != swapper.Draining) {
				continue
			}
		}
		if !m.Unlisted {
			out = appendNamed(out, s.ollamaInfo(m, nil, m.ID), m.Aliases)
		}
		for _, v := range m.Variants {
			if !v.Unlisted {
				out = appendNamed(out, s.ollamaInfo(m, v, v.ID), v.Aliases)
			}
		}
	}
	return out
}

// appendNamed appends info, then the same under each of aliases: one look
// at the model (its status, its digest) serves every name it goes by.
func appendNamed(out []ollama.ModelInfo, info ollama.ModelInfo, aliases []string) []ollama.ModelInfo {
	out = append(out, info)
	for _, a := range aliases {
		info.Name = a
		out = append(out, info)
	}
	return out
}

// ollamaInfo describes m (or its variant v) under name, from its
// configuration and what the swapper knows of its backend.
func (s *Server) ollamaInfo(m *config.Model, v *config.Variant, name string) ollama.ModelInfo {
	info := &m.Info
	if v != nil {
		info = &v.Info
	}
	sum := sha256.Sum256([]byte(m.ID + "\x00" + strings.Join(m.Cmd, "\x00")))
	mi := ollama.ModelInfo{
		Name: name, ModifiedAt: time.Unix(s.created, 0), Digest: hex.EncodeToString(sum[:]),
		Capabilities: info.Capabilities, Description: info.Description,
		Size: m.Memory.RAM + m.Memory.VRAM, SizeVRAM: m.Memory.VRAM,
	}
	var meta map[string]any
	if len(info.Metadata) > 0 && json.Unmarshal(info.Metadata, &meta) == nil {
		mi.Family = metaString(meta, "family")
		mi.ParameterSize = metaString(meta, "parameter_size", "parameters", "size")
		mi.Quantization = metaString(meta, "quantization_level", "quantization", "quant")
		mi.Format = metaString(meta, "format")
		if n, ok := meta["context_length"].(float64); ok {
			mi.ContextLength = int(n)
		} else if n, ok := meta["context"].(float64); ok {
			mi.ContextLength = int(n)
		}
	}
	if mi.Format == "" && hasGGUF(m.Cmd) {
		mi.Format = "gguf"
	}
	if len(m.Params.Set)+len(m.Params.Default) > 0 || v != nil {
		mi.Parameters = paramsText(v, m)
	}
	if s.status != nil {
		if st, ok := s.status(m.ID); ok {
			// What planning counts: declared, raised to what it was
			// measured to use; and what it uses now, once loaded.
			mi.Size, mi.SizeVRAM = st.Need.RAM+st.Need.VRAM, st.Need.VRAM
			if st.Pid != 0 && st.Usage.RAM+st.Usage.TotalVRAM() > 0 {
				mi.Size, mi.SizeVRAM = st.Usage.RAM+st.Usage.TotalVRAM(), st.Usage.TotalVRAM()
			}
			mi.ExpiresAt = st.ExpiresAt
		}
	}
	return mi
}

// metaString is the first of keys metadata gives a string (or number)
// for.
func metaString(meta map[string]any, keys ...string) string {
	for _, k := range keys {
		switch x := meta[k].(type) {
		case string:
			return x
		case float64:
			return fmt.Sprint(x)
		}
	}
	return ""
}

// hasGGUF reports whether a command names a .gguf file, as llama-server's
// do.
func hasGGUF(cmd []string) bool {
	for _, a := range cmd {
		if strings.HasSuffix(strings.ToLower(a), ".gguf") {
			return true
		}
	}
	return false
}

// paramsText says a model's (or variant's) params as Modelfile-like
// lines, for /api/show's "parameters".
func paramsText(v *config.Variant, m *config.Model) string {
	p := m.Params
	if v != nil {
		p = v.Params
	}
	var b strings.Builder
	for _, r := range p.Set {
		fmt.Fprintf(&b, "%s %s\n", r.Path, r.Value)
	}
	for _, r := range p.Default {
		fmt.Fprintf(&b, "%s %s (default)\n", r.Path, r.Value)
	}
	return b.String()
}
