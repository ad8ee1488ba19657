package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/hotswap/hotswap/control"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/swapper"
)

// The control plane over HTTP: /admin/* (and /metrics), behind admin_keys
// (api_keys when there are none). The work is control's; this maps it to
// routes, JSON and errors.

// Admin is what the admin API asks of the control plane.
type Admin interface {
	// Resolve maps a model name or alias to its id, or refuses an unknown
	// one (swapper.ErrUnknownModel), as Load and Unload would.
	Resolve(name string) (string, error)
	Running() []control.ModelStatus
	Models() []control.ModelStatus
	Memory(device string) ([]swapper.DeviceReport, error)
	Load(ctx context.Context, model string) error
	Unload(ctx context.Context, model string, force bool) error
	UnloadAll(ctx context.Context, force bool) ([]string, error)
	Modes() control.ModesInfo
	SwitchMode(ctx context.Context, name string) (control.ModeResult, error)
	Restore(ctx context.Context) (control.ModeResult, error)
	Reload(ctx context.Context) (control.ReloadResult, error)
	ForgetFootprint(model string) (id string, forgotten int, err error)
	// Plan says what a request for model would do now, changing nothing
	// (GET /admin/plan?model=X).
	Plan(model string) (swapper.DryRun, error)
}

// heartbeat is how often an idle event stream gets a comment line, so
// that proxies in between do not drop it.
const heartbeat = 15 * time.Second

func (s *Server) handleAdmin(ctx *fasthttp.RequestCtx, path string) {
	if s.admin == nil {
		s.fail(ctx, "", unknownPath(path))
		return
	}
	post, get := ctx.IsPost(), ctx.IsGet() || ctx.IsHead()
	if post {
		// A command is bound to its client: one that hangs up stops
		// waiting for it (what was set going, a drain, goes on).
		cmd, done := s.commandContext(ctx)
		defer done()
		s.adminCommand(ctx, cmd, strings.TrimPrefix(path, "/admin/"))
		return
	}
	switch rest := strings.TrimPrefix(path, "/admin/"); {
	case rest == "running" && get:
		s.adminAnswer(ctx, s.admin.Running(), nil)
	case rest == "models" && get:
		s.adminAnswer(ctx, s.withVariants(s.admin.Models()), nil)
	case rest == "history" && get:
		s.adminHistory(ctx)
	case rest == "memory" && get:
		s.adminMemory(ctx)
	case rest == "events" && get:
		s.adminEvents(ctx)
	case rest == "modes" && get:
		s.adminAnswer(ctx, s.admin.Modes(), nil)
	case rest == "plan" && get:
		s.adminPlan(ctx)
	case rest == "running", rest == "models", rest == "history", rest == "memory", rest == "events", rest == "modes", rest == "plan":
		s.fail(ctx, "", methodNotAllowed("GET"))
	case rest == "unload", rest == "reload", strings.HasPrefix(rest, "modes/"), strings.HasPrefix(rest, "models/"):
		s.fail(ctx, "", methodNotAllowed("POST"))
	default:
		s.fail(ctx, "", unknownPath(path))
	}
}

// adminCommand serves the admin API's POSTs, each bound to cmd.
func (s *Server) adminCommand(ctx *fasthttp.RequestCtx, cmd context.Context, rest string) {
	switch {
	case rest == "modes/restore":
		res, err := s.admin.Restore(cmd)
		s.adminAnswer(ctx, res, err)
	case strings.HasPrefix(rest, "modes/"):
		res, err := s.admin.SwitchMode(cmd, strings.TrimPrefix(rest, "modes/"))
		s.adminAnswer(ctx, res, err)
	case rest == "reload":
		res, err := s.admin.Reload(cmd)
		s.adminAnswer(ctx, res, err)
	case rest == "unload":
		unloaded, err := s.admin.UnloadAll(cmd, ctx.QueryArgs().GetBool("force"))
		if unloaded == nil {
			unloaded = []string{}
		}
		s.adminAnswer(ctx, map[string]any{"unloaded": unloaded}, err)
	case strings.HasPrefix(rest, "models/"):
		s.adminModel(ctx, cmd, strings.TrimPrefix(rest, "models/"))
	case rest == "running", rest == "models", rest == "history", rest == "memory", rest == "events", rest == "modes", rest == "plan":
		s.fail(ctx, "", methodNotAllowed("GET"))
	default:
		s.fail(ctx, "", unknownPath("/admin/"+rest))
	}
}

// adminModelEntry is one model of GET /admin/models: its state, and the
// variants its backend serves.
type adminModelEntry struct {
	control.ModelStatus
	Variants []adminVariant `json:"variants,omitempty"`
}

// adminVariant is one variant under its model in GET /admin/models.
type adminVariant struct {
	ID       string   `json:"id"`
	Aliases  []string `json:"aliases,omitempty"`
	Unlisted bool     `json:"unlisted,omitempty"`
	Name     string   `json:"name,omitempty"`
}

// withVariants lists each model's variants under it.
func (s *Server) withVariants(models []control.ModelStatus) []adminModelEntry {
	cfg := s.config()
	out := make([]adminModelEntry, 0, len(models))
	for _, ms := range models {
		e := adminModelEntry{ModelStatus: ms}
		if m := cfg.Models[ms.Model]; m != nil {
			for _, v := range m.Variants {
				e.Variants = append(e.Variants, adminVariant{ID: v.ID, Aliases: v.Aliases, Unlisted: v.Unlisted, Name: v.Info.Name})
			}
		}
		out = append(out, e)
	}
	return out
}

// commandContext is the context of an operator's command: it ends when
// its client hangs up, or hotswap shuts down. Not derived from the
// RequestCtx: fasthttp reuses that once the handler returns, while a
// derived context may still be looking at it.
func (s *Server) commandContext(ctx *fasthttp.RequestCtx) (context.Context, func()) {
	cmd, cancel := context.WithCancel(context.Background())
	stop := watchHangup(ctx.Conn(), cancel)
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-cmd.Done():
		}
	}()
	return cmd, func() { stop(); cancel() }
}

// adminAnswer writes v, or err in OpenAI's error format.
func (s *Server) adminAnswer(ctx *fasthttp.RequestCtx, v any, err error) {
	if err != nil {
		s.fail(ctx, "", err)
		return
	}
	s.writeJSON(ctx, v)
	s.logRead(ctx, fasthttp.StatusOK, len(ctx.Response.Body()))
}

// adminModel serves /admin/models/{model}/load, .../unload and .../forget.
func (s *Server) adminModel(ctx *fasthttp.RequestCtx, cmd context.Context, rest string) {
	name, verb, ok := strings.Cut(rest, "/")
	if !ok || name == "" {
		s.fail(ctx, "", unknownPath("/admin/models/"+rest))
		return
	}
	switch verb {
	case "load":
		if wait := ctx.QueryArgs().Peek("wait"); len(wait) > 0 && !ctx.QueryArgs().GetBool("wait") {
			// Asked now, so that an unknown model gets the 404 a waiting
			// load gets, rather than a 202 for a load that cannot happen.
			if _, err := s.admin.Resolve(name); err != nil {
				s.fail(ctx, "", err)
				return
			}
			s.loadInBackground(name)
			ctx.SetStatusCode(fasthttp.StatusAccepted)
			s.writeJSON(ctx, map[string]string{"model": name, "state": "loading"})
			s.logRequest(ctx, name, fasthttp.StatusAccepted, 0, nil)
			return
		}
		err := s.admin.Load(cmd, name)
		s.adminAnswer(ctx, map[string]string{"model": name, "state": "ready"}, err)
	case "forget":
		id, n, err := s.admin.ForgetFootprint(name)
		s.adminAnswer(ctx, map[string]any{"model": id, "forgotten": n}, err)
	case "unload":
		err := s.admin.Unload(cmd, name, ctx.QueryArgs().GetBool("force"))
		s.adminAnswer(ctx, map[string]string{"model": name, "state": "stopped"}, err)
	default:
		s.fail(ctx, "", unknownPath("/admin/models/"+rest))
	}
}

// loadInBackground loads name for a caller that does not wait. Its
// outcome is in the log and the event stream; queue_timeout bounds it,
// and closing the router ends it.
func (s *Server) loadInBackground(name string) {
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		if err := s.admin.Load(context.Background(), name); err != nil {
			s.log.Warn("load failed", zap.String("model", clip(name)), zap.Error(err))
		}
	}()
}

// adminPlan serves GET /admin/plan?model=X: a dry run (see
// swapper.DryRun for the JSON), which starts and reserves nothing.
func (s *Server) adminPlan(ctx *fasthttp.RequestCtx) {
	model := string(ctx.QueryArgs().Peek("model"))
	if model == "" {
		s.fail(ctx, "", &apiError{Status: 400, Type: "invalid_request_error", Code: "missing_model",
			Message: "model is required: GET /admin/plan?model=X"})
		return
	}
	d, err := s.admin.Plan(model)
	s.adminAnswer(ctx, d, err)
}

// memoryReport is one device in GET /admin/memory.
type memoryReport struct {
	Device string `json:"device"`
	Name   string `json:"name,omitempty"`
	// Vendor and Unified are a GPU's: its maker, and whether its memory
	// is system RAM (an APU, Apple Silicon; total is then the part of RAM
	// the GPU may use, and what models use there counts in RAM's used_by
	// too).
	Vendor    string           `json:"vendor,omitempty"`
	Unified   bool             `json:"unified,omitempty"`
	Total     int64            `json:"total"`
	Free      int64            `json:"free"`
	Reserve   int64            `json:"reserve"`
	UsedBy    map[string]int64 `json:"used_by"`
	Used      int64            `json:"used"`
	Reserved  int64            `json:"reserved"`
	Available int64            `json:"available"`
	Limit     int64            `json:"limit,omitempty"`
	Measured  time.Time        `json:"measured_at"`
}

func (s *Server) adminMemory(ctx *fasthttp.RequestCtx) {
	devs, err := s.admin.Memory(string(ctx.QueryArgs().Peek("device")))
	if err != nil {
		s.fail(ctx, "", err)
		return
	}
	out := make([]memoryReport, 0, len(devs))
	for _, d := range devs {
		r := memoryReport{Device: d.Device, Name: d.Name, Vendor: d.Vendor, Unified: d.Unified, Total: d.Total, Free: d.Free, Reserve: d.Reserve,
			UsedBy: d.Used, Reserved: d.Reserved, Available: d.Available, Limit: d.Limit, Measured: d.Measured}
		for _, n := range d.Used {
			r.Used += n
		}
		out = append(out, r)
	}
	s.adminAnswer(ctx, out, nil)
}

// adminEvents streams events as server-sent events until the client
// leaves or hotswap shuts down. ?logs=true adds the log lines. A client
// that comes back with Last-Event-ID (a browser's EventSource does), or
// asks with ?since=ID (0: all that is kept), first gets what it missed.
func (s *Server) adminEvents(ctx *fasthttp.RequestCtx) {
	if s.events == nil {
		s.fail(ctx, "", unknownPath("/admin/events"))
		return
	}
	logs := ctx.QueryArgs().GetBool("logs")
	since := string(ctx.Request.Header.Peek("Last-Event-ID"))
	if since == "" {
		since = string(ctx.QueryArgs().Peek("since"))
	}
	var sub *events.Subscription
	var past []events.Event
	if since == "" {
		sub = s.events.Subscribe(256, logs)
	} else {
		after, err := strconv.ParseUint(since, 10, 64)
		if err != nil {
			s.fail(ctx, "", &apiError{Status: 400, Type: "invalid_request_error", Code: "invalid_value",
				Message: "since (or Last-Event-ID) must be an event id: a whole number, 0 for all that is kept"})
			return
		}
		sub, past = s.events.SubscribeAfter(256, logs, after)
	}
	openStream(ctx, fasthttp.StatusOK, "text/event-stream")
	done := s.done
	s.logRead(ctx, fasthttp.StatusOK, 0)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer sub.Close()
		tick := time.NewTicker(heartbeat)
		defer tick.Stop()
		// A first line, so that the client sees the stream open at once,
		// and a browser's wait before it reconnects, shorter than its own.
		if _, err := w.WriteString(": hotswap events\nretry: 2000\n\n"); err != nil {
			return
		}
		for _, e := range past {
			if writeEvent(w, e) != nil {
				return
			}
		}
		if w.Flush() != nil {
			return
		}
		for {
			var err error
			select {
			case e := <-sub.C():
				err = writeEvent(w, e)
			case <-tick.C:
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

func writeEvent(w *bufio.Writer, e events.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if e.ID > 0 {
		w.WriteString("id: ")
		w.Write(strconv.AppendUint(w.AvailableBuffer(), e.ID, 10))
		w.WriteByte('\n')
	}
	_, err = w.WriteString("event: " + e.Type + "\ndata: ")
	if err == nil {
		_, err = w.Write(b)
	}
	if err == nil {
		_, err = w.WriteString("\n\n")
	}
	return err
}
