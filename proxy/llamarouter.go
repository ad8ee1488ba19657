package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/swapper"
)

// llama.cpp's router API for models, as llama-server serves it when it is
// started without a model (router mode): llama.cpp's web UI and front ends
// that know llama.cpp (Open WebUI) read it to show which models are loaded
// and to load and unload them. What is read here is llama.cpp's
// tools/server/server-models.cpp (the handlers post_router_models_load,
// get_router_models, post_router_models_unload, get_router_models_sse and
// notify_sse/update_status) and server.cpp (where the routes are
// registered), and what its web UI reads (tools/ui/src/lib/services/
// models.service.ts, stores/models/status.svelte.ts).
//
//	GET  /models         {"object":"list","data":[{"id", ..., "status":{"value":"loaded"}}]}
//	POST /models/load    {"model":"x"} → {"success":true}
//	POST /models/unload  {"model":"x"} → {"success":true}
//	GET  /models/sse     data: {"model":"x","event":"status_change","data":{"status":"loaded"}}
//
// hotswap's states map onto llama.cpp's statuses (unloaded, loading,
// loaded; llama.cpp's downloading and sleeping have no counterpart here):
//
//	stopped            → unloaded; with failed: true, exit_code and message
//	                     while its last start has failed (llama.cpp marks a
//	                     failed load the same way: unloaded, failed, exit_code)
//	starting           → loading (making room for it counts: it is on its way)
//	ready              → loaded
//	draining, stopping → loaded: its process still runs and answers what it
//	                     has in flight; llama.cpp has no unloading status and
//	                     keeps a model it is stopping loaded until its
//	                     process has exited, then says unloaded
//
// A variant is listed after its model, as /v1/models lists it, with its
// model's status: it is served by its model's backend, so it is loaded
// exactly when its model is, and loading or unloading it loads or unloads
// that backend. Unlisted models and variants are left out of the list but
// accepted by load and unload (llama.cpp's hidden models are too).

// llamaBodyLimit bounds the body of a load or unload: {"model": "..."}
// and llama.cpp web UI's extra_args fit many times over.
const llamaBodyLimit = 64 << 10

// llamaPoll is how often an event stream looks for loading models whose
// start was called off (see llamaStream.check).
const llamaPoll = 100 * time.Millisecond

// llamaModel is one entry of GET /models: llama.cpp's fields (id, aliases,
// tags, object, owned_by, created, status, architecture, source,
// can_remove), then hotswap's own.
type llamaModel struct {
	ID           string            `json:"id"`
	Aliases      []string          `json:"aliases"`
	Tags         []string          `json:"tags"`
	Object       string            `json:"object"`
	OwnedBy      string            `json:"owned_by"`
	Created      int64             `json:"created"`
	Status       llamaStatus       `json:"status"`
	Architecture llamaArchitecture `json:"architecture"`
	// Source is where llama.cpp found the model; hotswap's come from its
	// configuration, which is what llama.cpp calls a preset.
	Source string `json:"source"`
	// CanRemove is false: hotswap deletes no model files.
	CanRemove bool   `json:"can_remove"`
	Name      string `json:"name,omitempty"`
	// State is hotswap's own state (stopped, starting, ready, draining,
	// stopping, failed), which Status.Value simplifies.
	State     string `json:"state"`
	VariantOf string `json:"variant_of,omitempty"`
}

// llamaStatus is an entry's status. llama.cpp also sends the child's
// command line as args; hotswap leaves it out, since a backend's command
// may hold a key, and llama.cpp's web UI does not read it.
type llamaStatus struct {
	Value    string `json:"value"`
	Failed   bool   `json:"failed,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	// Message says why the last start failed (hotswap's addition).
	Message string `json:"message,omitempty"`
}

type llamaArchitecture struct {
	InputModalities  []string `json:"input_modalities"`
	OutputModalities []string `json:"output_modalities"`
}

// llama.cpp's status values.
const (
	llamaUnloaded = "unloaded"
	llamaLoading  = "loading"
	llamaLoaded   = "loaded"
	llamaSleeping = "sleeping" // a router's child asleep, woken by a request
)

// llamaValue maps a hotswap state to llama.cpp's status value (see the
// table above).
func llamaValue(s swapper.State) string {
	switch s {
	case swapper.Starting:
		return llamaLoading
	case swapper.Ready, swapper.Draining, swapper.Stopping, swapper.Sleeping:
		return llamaLoaded
	case swapper.Asleep:
		return llamaSleeping
	}
	return llamaUnloaded
}

// llamaStatusOf is the status of model id, and hotswap's state for it.
func (s *Server) llamaStatusOf(id string) (llamaStatus, string) {
	if s.status == nil {
		return llamaStatus{Value: llamaUnloaded}, swapper.Stopped.String()
	}
	st, ok := s.status(id)
	if !ok {
		return llamaStatus{Value: llamaUnloaded}, swapper.Stopped.String()
	}
	out := llamaStatus{Value: llamaValue(st.State)}
	if st.State == swapper.Stopped && st.LastError != nil {
		// A start that failed: a process that exited, or one that never
		// became healthy. hotswap has no exit code for every such
		// failure, and llama.cpp's clients only ask whether it is 0.
		one := 1
		out.Failed, out.ExitCode = true, &one
		out.Message = s.redactKeys(st.LastError.Error())
		return out, "failed"
	}
	return out, st.State.String()
}

// modalities maps hotswap's capabilities onto llama.cpp's input
// modalities, which always include text.
func modalities(info *config.Info) llamaArchitecture {
	in := []string{"text"}
	for _, c := range info.Capabilities {
		if c == "image" || c == "audio" {
			in = append(in, c)
		}
	}
	return llamaArchitecture{InputModalities: in, OutputModalities: []string{"text"}}
}

// isLlamaModels reports whether path is llama.cpp's router API for models:
// GET /models, POST /models/load, POST /models/unload, GET /models/sse.
func isLlamaModels(path []byte) bool {
	return string(path) == "/models" || bytes.HasPrefix(path, []byte("/models/"))
}

// handleLlamaModels serves llama.cpp's router API for models.
func (s *Server) handleLlamaModels(ctx *fasthttp.RequestCtx, path string) {
	get, post := ctx.IsGet() || ctx.IsHead(), ctx.IsPost()
	switch {
	case path == "/models" && get:
		s.llamaList(ctx)
	case path == "/models" && (post || ctx.IsDelete()):
		// llama.cpp downloads a model from Hugging Face (POST) or deletes
		// one from its cache (DELETE); hotswap's models are its
		// configuration's.
		s.fail(ctx, "", &apiError{Status: fasthttp.StatusNotImplemented, Type: "invalid_request_error",
			Code: "not_supported", Message: "hotswap does not download or delete models: " +
				"its models are those of its configuration (add one there and reload)"})
	case path == "/models":
		s.fail(ctx, "", methodNotAllowed("GET"))
	case path == "/models/sse" && ctx.IsGet():
		// GET alone: a HEAD gets no body, so its stream would never be
		// written, nor its subscription closed.
		s.llamaEvents(ctx)
	case path == "/models/sse":
		s.fail(ctx, "", methodNotAllowed("GET"))
	case (path == "/models/load" || path == "/models/unload") && post:
		s.llamaCommand(ctx, path == "/models/load")
	case path == "/models/load", path == "/models/unload":
		s.fail(ctx, "", methodNotAllowed("POST"))
	default:
		s.fail(ctx, "", unknownPath(path))
	}
}

// llamaList serves GET /models: each model in configuration order, then
// its variants, as /v1/models lists them.
func (s *Server) llamaList(ctx *fasthttp.RequestCtx) {
	cfg := s.config()
	list := struct {
		Data   []llamaModel `json:"data"`
		Object string       `json:"object"`
	}{Data: make([]llamaModel, 0, len(cfg.ModelIDs)), Object: "list"}
	for _, id := range cfg.ModelIDs {
		m := cfg.Models[id]
		status, state := s.llamaStatusOf(id)
		entry := func(id string, aliases []string, info *config.Info) llamaModel {
			if aliases == nil {
				aliases = []string{}
			}
			return llamaModel{ID: id, Aliases: aliases, Tags: []string{}, Object: "model", OwnedBy: "hotswap",
				Created: s.created, Status: status, Architecture: modalities(info), Source: "preset",
				Name: info.Name, State: state}
		}
		if !m.Unlisted {
			list.Data = append(list.Data, entry(m.ID, m.Aliases, &m.Info))
		}
		for _, v := range m.Variants {
			if !v.Unlisted {
				e := entry(v.ID, v.Aliases, &v.Info)
				e.VariantOf = m.ID
				list.Data = append(list.Data, e)
			}
		}
	}
	s.writeJSON(ctx, list)
	s.logRead(ctx, fasthttp.StatusOK, len(ctx.Response.Body()))
}

// llamaCommand serves POST /models/load and /models/unload. llama.cpp
// answers {"success":true} as soon as it has set the load or unload going,
// and its clients wait for the status on /models/sse (or poll /models).
// hotswap answers once the model is loaded (or unloaded), so that a client
// that only reads the answer learns whether it worked, as
// /admin/models/{model}/load does; its event stream says the same as
// llama.cpp's meanwhile. ?wait=false answers at once, as llama.cpp does.
// ?force=true cuts an unloaded model's requests in flight, as on /admin.
func (s *Server) llamaCommand(ctx *fasthttp.RequestCtx, load bool) {
	if s.admin == nil {
		s.fail(ctx, "", unknownPath(string(ctx.Path())))
		return
	}
	if err := s.readBody(ctx, llamaBodyLimit); err != nil {
		s.fail(ctx, "", err)
		return
	}
	name, err := llamaRequestModel(ctx.Request.Body())
	if err != nil {
		s.fail(ctx, "", err)
		return
	}
	m, _, ok := s.config().Lookup(name)
	if !ok {
		// llama.cpp answers an unknown model 404 on load but 400 on
		// unload; hotswap answers 404 on both, as everywhere else.
		s.fail(ctx, name, s.unknownModel(name))
		return
	}
	id := m.ID
	_, state := s.llamaStatusOf(id)
	// llama.cpp refuses to load a model that is loading or loaded, and to
	// unload one that is not running; so does hotswap. A draining or
	// stopping model (loaded, for llama.cpp) may be loaded again (it
	// comes back once it has stopped) or unloaded (the unload waits for
	// the stop already under way).
	switch {
	case load && (state == "starting" || state == "ready"):
		s.fail(ctx, id, &apiError{Status: fasthttp.StatusBadRequest, Type: "invalid_request_error",
			Code: "already_running", Message: "the model `" + id + "` is already running (" + state + ")"})
		return
	case !load && (state == "stopped" || state == "failed"):
		s.fail(ctx, id, &apiError{Status: fasthttp.StatusBadRequest, Type: "invalid_request_error",
			Code: "not_running", Message: "the model `" + id + "` is not running"})
		return
	}
	force := ctx.QueryArgs().GetBool("force")
	if wait := ctx.QueryArgs().Peek("wait"); len(wait) > 0 && !ctx.QueryArgs().GetBool("wait") {
		if load {
			s.loadInBackground(id)
		} else {
			s.unloadInBackground(id, force)
		}
		s.writeJSON(ctx, map[string]bool{"success": true})
		s.logRequest(ctx, id, fasthttp.StatusOK, len(ctx.Response.Body()), nil)
		return
	}
	cmd, done := s.commandContext(ctx)
	defer done()
	if load {
		err = s.admin.Load(cmd, id)
	} else {
		err = s.admin.Unload(cmd, id, force)
	}
	if err != nil {
		s.fail(ctx, id, err)
		return
	}
	s.writeJSON(ctx, map[string]bool{"success": true})
	s.logRequest(ctx, id, fasthttp.StatusOK, len(ctx.Response.Body()), nil)
}

// llamaRequestModel reads the model a load or unload names: llama.cpp's
// body is {"model": "..."}; other fields (its web UI's extra_args) are
// ignored, as llama.cpp ignores them.
func llamaRequestModel(body []byte) (string, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return "", badRequest("invalid_request", `request body is empty; expected {"model": "..."}`)
	}
	var req struct {
		Model *string `json:"model"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", badRequest("invalid_json", `expected {"model": "..."}: `+err.Error())
	}
	if req.Model == nil || *req.Model == "" {
		return "", badRequest("missing_model", "model name is missing from the request")
	}
	return *req.Model, nil
}

// unloadInBackground unloads model for a caller that does not wait. Its
// outcome is in the log and the event streams; the drain it sets going
// goes on even if hotswap shuts down first (the shutdown stops it).
func (s *Server) unloadInBackground(model string, force bool) {
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := s.admin.Unload(ctx, model, force); err != nil && ctx.Err() == nil {
			s.log.Warn("unload failed", zap.String("model", clip(model)), zap.Error(err))
		}
	}()
}

// llamaEvent is one record of GET /models/sse, as llama.cpp's
// notify_sse writes it: the model, the event's name, and its data.
type llamaEvent struct {
	Model string          `json:"model"`
	Event string          `json:"event"`
	Data  *llamaEventData `json:"data,omitempty"`
}

// llamaEventData is a status event's data: the status, and for unloaded
// the exit code (0: stopped as asked; otherwise it failed or crashed),
// as llama.cpp's update_status writes it. Message (hotswap's addition)
// says why it failed.
type llamaEventData struct {
	Status   string `json:"status"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Message  string `json:"message,omitempty"`
}

// llama.cpp's event names: model_status when an instance is spawned (its
// status is loading), status_change for every change after that, and
// models_reload (model "*") when the list of models changed.
const (
	llamaModelStatus  = "model_status"
	llamaStatusChange = "status_change"
	llamaModelsReload = "models_reload"
)

// llamaRecords maps one of hotswap's events to llama.cpp's, for the model
// and each of its variants (whose status is their model's). Events that
// change no status give none: an eviction or an unload leaves the model
// loaded until its stop.
func llamaRecords(cfg *config.Config, e events.Event) []llamaEvent {
	var name string
	data := &llamaEventData{}
	code := func(c int) *int { return &c }
	switch e.Type {
	case events.Start:
		name, data.Status = llamaModelStatus, llamaLoading
	case events.Ready:
		name, data.Status = llamaStatusChange, llamaLoaded
	case events.Stop:
		name, data.Status, data.ExitCode = llamaStatusChange, llamaUnloaded, code(0)
	case events.Fail, events.Refuse:
		// A start that failed, or one refused for lack of memory: the
		// model is not loaded, and a client waiting for it to be must be
		// told it will not be.
		name, data.Status, data.ExitCode, data.Message = llamaStatusChange, llamaUnloaded, code(1), e.Message
		if msg, ok := e.Data["error"].(string); ok && data.Message == "" {
			data.Message = msg
		}
	case events.Crash:
		exit, _ := e.Data["exit"].(string)
		data.Message = e.Message
		if data.Message == "" {
			data.Message = exit
		}
		name, data.Status, data.ExitCode = llamaStatusChange, llamaUnloaded, code(exitCode(exit))
	case events.Reload, events.Dropped:
		// A reload may add or remove models; a stream that missed events
		// no longer knows the statuses. Either way the client reads the
		// list again, which is what llama.cpp's models_reload asks.
		return []llamaEvent{{Model: "*", Event: llamaModelsReload}}
	default:
		return nil
	}
	out := []llamaEvent{{Model: e.Model, Event: name, Data: data}}
	if m, ok := cfg.Models[e.Model]; ok {
		for _, v := range m.Variants {
			out = append(out, llamaEvent{Model: v.ID, Event: name, Data: data})
		}
	}
	return out
}

// exitCode reads the status of "exit status N", as hotswap describes an
// exit; anything else (a signal, a backend that stopped answering) is 1.
func exitCode(exit string) int {
	if n, err := strconv.Atoi(strings.TrimPrefix(exit, "exit status ")); err == nil && n != 0 {
		return n
	}
	return 1
}

// llamaEvents streams llama.cpp's status events (GET /models/sse) until
// the client leaves or hotswap shuts down. As llama.cpp's, each record is
// one data line of JSON, without an event name or id; a comment line
// opens the stream and keeps it alive through proxies (SSE readers skip
// comments). Unlike /admin/events, nothing missed is replayed: llama.cpp's
// clients read GET /models when they (re)connect.
func (s *Server) llamaEvents(ctx *fasthttp.RequestCtx) {
	if s.events == nil {
		s.fail(ctx, "", unknownPath("/models/sse"))
		return
	}
	sub := s.events.Subscribe(256, false)
	ls := &llamaStream{s: s, last: map[string]string{}, stopped: map[string]bool{}}
	// Taken after subscribing: a change from now on is in sub.
	cfg := s.config()
	for _, id := range cfg.ModelIDs {
		st, _ := s.llamaStatusOf(id)
		ls.last[id] = st.Value
	}
	openStream(ctx, fasthttp.StatusOK, "text/event-stream")
	done := s.done
	s.logRead(ctx, fasthttp.StatusOK, 0)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer sub.Close()
		beat := time.NewTicker(heartbeat)
		defer beat.Stop()
		poll := time.NewTicker(llamaPoll)
		defer poll.Stop()
		if _, err := w.WriteString(": hotswap models\n\n"); err != nil || w.Flush() != nil {
			return
		}
		for {
			var err error
			select {
			case e := <-sub.C():
				err = ls.write(w, llamaRecords(s.config(), e))
			case <-poll.C:
				err = ls.write(w, ls.check())
			case <-beat.C:
				_, err = w.WriteString(": heartbeat\n\n")
			case <-done:
				return
			}
			if err != nil || w.Flush() != nil {
				return // the client has gone
			}
		}
	})
}

// llamaStream is one client's /models/sse: the status it was last told
// of each model, to notice a start that ends without an event.
type llamaStream struct {
	s    *Server
	last map[string]string // model id → status value last sent
	// stopped are loading models seen stopped by one poll: told
	// unloaded at the next, unless an event said what happened.
	stopped map[string]bool
}

// write sends records, noting each model's status.
func (ls *llamaStream) write(w *bufio.Writer, records []llamaEvent) error {
	models := ls.s.config().Models
	for _, r := range records {
		if _, ok := models[r.Model]; ok && r.Data != nil {
			ls.last[r.Model] = r.Data.Status
			delete(ls.stopped, r.Model)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		w.WriteString("data: ")
		w.Write(b)
		if _, err := w.WriteString("\n\n"); err != nil {
			return err
		}
	}
	return nil
}

// check finds loading models whose start was called off (an unload while
// loading, a shutdown): hotswap sends no event for those, while llama.cpp
// says unloaded. A model is told unloaded once two polls in a row have
// seen it stopped, so that a failed start's own event (sent a moment
// after it is stopped, and saying why) comes first.
func (ls *llamaStream) check() []llamaEvent {
	if ls.s.status == nil {
		return nil
	}
	var out []llamaEvent
	for id, v := range ls.last {
		if v != llamaLoading {
			continue
		}
		st, ok := ls.s.status(id)
		if !ok || st.State != swapper.Stopped {
			delete(ls.stopped, id)
			continue
		}
		if !ls.stopped[id] {
			ls.stopped[id] = true
			continue
		}
		// Told as a stop: it was asked for (exit code 0).
		out = append(out, llamaRecords(ls.s.config(), events.Event{Type: events.Stop, Model: id})...)
	}
	return out
}

// handleRouterProps answers GET /props without ?model= as llama.cpp's
// router does: its web UI turns on model loading and unloading when role
// is "router". With ?model=, /props is that model's backend's, forwarded.
func (s *Server) handleRouterProps(ctx *fasthttp.RequestCtx) {
	s.writeJSON(ctx, map[string]any{
		"role":        "router",
		"model_alias": "hotswap",
		"model_path":  "none",
		"default_generation_settings": map[string]any{
			"params": map[string]any{},
			"n_ctx":  0,
		},
	})
	s.logRead(ctx, fasthttp.StatusOK, len(ctx.Response.Body()))
}

// llamaDisabled are llama-server's paths for features it serves only when
// started with their flag (--tools, the CORS proxy), which llama.cpp's web
// UI asks for on every load: hotswap has neither, and answers as
// llama-server without the flag does, which the UI takes quietly.
var llamaDisabled = map[string]bool{"/tools": true, "/cors-proxy": true}

var errFeatureDisabled = &apiError{Status: 403, Type: "feature_disabled", Code: "feature_disabled",
	Message: "this feature is disabled"}

// handleStreamLookup answers llama.cpp's router's question of which
// conversations have a stream it could resume (POST /v1/streams/lookup),
// which its web UI asks after a reload: none, since hotswap keeps no
// streams for resuming; a cut stream is asked again.
func (s *Server) handleStreamLookup(ctx *fasthttp.RequestCtx) {
	if err := s.readBody(ctx, 64<<10); err != nil {
		s.fail(ctx, "", err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString("[]")
	s.logRead(ctx, fasthttp.StatusOK, 2)
}
