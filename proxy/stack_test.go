package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/control"
	evhub "github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/probe"
	"github.com/hotswap/hotswap/proxy"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// stack is hotswap assembled in-process in front of real mock backends.
type stack struct {
	t      testing.TB
	url    string
	cfg    *config.Config
	sw     *swapper.Swapper
	rt     *router.Router
	starts mocktest.Starter
	logs   *observer.ObservedLogs
	client *http.Client
	// shutdown stops hotswap as SIGTERM does, giving answers in flight
	// grace; the test's cleanup calls it too.
	shutdown func(grace time.Duration)
}

// newStack serves the YAML config cfgText, in which MOCK stands for the
// mock backend's path.
func newStack(t testing.TB, cfgText string) *stack {
	t.Helper()
	return newStackOn(t, cfgText, nil)
}

// newStackOn is newStack with hotswap's time on c (nil: the real clock):
// the swapper, router and proxy share it, as they do in hotswap, so that a
// test moves a fake clock past a queue timeout or a back-off instead of
// waiting it out. Backends' readiness is polled on the real clock (a
// Readiness of its own): the mock's loads take real time.
func newStackOn(t testing.TB, cfgText string, c clock.Clock) *stack {
	t.Helper()
	s, _ := newStackWith(t, cfgText, stackOptions{clock: c})
	return s
}

// stackOptions are what a test adds to the stack newStack builds.
type stackOptions struct {
	clock clock.Clock // hotswap's time (nil: the real clock)
	// events wires an event hub into the swapper and proxy, as cmd/hotswap
	// does (load progress and llama.cpp's status events read it); control
	// adds the control plane (/admin, load and unload) too.
	events, control bool
}

// newStackWith is newStack with what o adds; it also returns the proxy.
func newStackWith(t testing.TB, cfgText string, o stackOptions) (*stack, *proxy.Server) {
	t.Helper()
	cfg, err := config.Parse([]byte(strings.ReplaceAll(cfgText, "MOCK", mockExe)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	s := &stack{t: t, cfg: cfg, logs: logs}
	// Scripted memory: chat-a and chat-b use 6GiB each of 10GiB, so one
	// evicts the other; the rest use nothing.
	mem := probe.NewFake(mockExe, 10<<30)
	mem.Script("chat-a", probe.Usage{RAM: 6 << 30})
	mem.Script("chat-b", probe.Usage{RAM: 6 << 30})
	sopts := swapper.Options{
		Models:       cfg.Models,
		Ports:        cfg.Ports,
		Starter:      &s.starts,
		Log:          log,
		Memory:       mem,
		DrainTimeout: cfg.Scheduling.DrainTimeout,
		Clock:        o.clock,
		Readiness:    &probe.Readiness{},
	}
	var hub *evhub.Hub
	if o.events || o.control {
		hub = evhub.NewHub(nil)
		sopts.Events = hub
	}
	s.sw = swapper.New(sopts)
	ropts := router.ConfigOptions(cfg, log)
	ropts.Clock = o.clock
	rt := router.New(s.sw, ropts)
	s.rt = rt
	popts := proxy.Options{Config: cfg, Router: rt, Status: s.sw.Status, Log: log, Clock: o.clock}
	var ctl *control.Controller
	if hub != nil {
		popts.Events = hub
	}
	if o.control {
		ctl = control.New(control.Options{Config: cfg, Lifecycle: s.sw, Door: rt, Events: hub, Log: log})
		popts.Admin = ctl
	}
	px := proxy.New(popts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(served)
		_ = px.Serve(ln)
	}()
	s.url = "http://" + ln.Addr().String()
	s.client = &http.Client{Timeout: 30 * time.Second}
	s.shutdown = func(grace time.Duration) {
		once.Do(func() {
			// As cmd/hotswap does: queued requests are refused, answers in
			// flight get the grace, then the backends are stopped.
			s.client.CloseIdleConnections()
			rt.Close()
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			_ = px.Shutdown(ctx)
			s.sw.Close(ctx)
			if ctl != nil {
				ctl.Close()
			}
			<-served
		})
	}
	t.Cleanup(func() { s.shutdown(5 * time.Second) })
	return s, px
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body)
	}
	return v
}

// apiError returns the OpenAI error object of the body, failing the test
// if the body is not one.
func (r response) apiError(t *testing.T) (message, typ, code string) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil {
		t.Fatalf("not an OpenAI error body (status %d): %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error content type %q, want application/json", ct)
	}
	return e.Error.Message, e.Error.Type, e.Error.Code
}

func (s *stack) do(method, path, contentType string, body []byte, header ...string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s *stack) postJSON(path string, v any) response {
	s.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.do("POST", path, "application/json", b)
}

func (s *stack) chat(model, content string) response {
	s.t.Helper()
	return s.postJSON("/v1/chat/completions", map[string]any{
		"model":    model,
		"messages": []map[string]string{{"role": "user", "content": content}},
	})
}

// event is one SSE data line and when it arrived.
type event struct {
	data string
	at   time.Time
}

// stream posts a streaming chat request and reads events until the stream
// ends. It returns the response header and the events.
func (s *stack) stream(model string, extra map[string]any) (*http.Response, []event, error) {
	s.t.Helper()
	body := map[string]any{
		"model":    model,
		"stream":   true,
		"messages": []map[string]string{{"role": "user", "content": "stream please"}},
	}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	resp, err := s.client.Post(s.url+"/v1/chat/completions", "application/json", bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []event
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if d, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
			events = append(events, event{data: d, at: time.Now()})
		}
		if err == io.EOF {
			return resp, events, nil
		}
		if err != nil {
			return resp, events, err
		}
	}
}

// status returns the swapper's view of model.
func (s *stack) status(model string) swapper.Status {
	st, ok := s.sw.Status(model)
	if !ok {
		s.t.Fatalf("no status for %q", model)
	}
	return st
}

func zapString(k, v string) zap.Field { return zap.String(k, v) }
