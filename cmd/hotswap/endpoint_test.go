package main

import (
	"bytes"
	"net/http"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hotswap/hotswap/internal/mocktest"
	"github.com/hotswap/hotswap/metrics"
)

// Memory for one of the two models: a start of the other evicts it.
const pickerModels = `
ports: 22000-22999
stop_timeout: 2s
api_keys: [user-key]
admin_keys: [admin-key]
memory: {limit_ram: 100MiB, reserve_ram: 0}
models:
  a:
    cmd: "MOCK -port ${PORT} -model ${MODEL} -tokens 50 -stream-interval 40ms"
    aliases: [alias-a]
    variants: {a-fast: {aliases: [quick]}}
    memory: {ram: 80MiB}
  b:
    cmd: "MOCK -port ${PORT} -model ${MODEL}"
    memory: {ram: 80MiB}
`

// pickerView is what an endpoint picker reads of a scrape.
type pickerView struct {
	running, waiting, max string
	waitingReqs, runningReqs,
	memory, leaving float64
}

// scrapePicker reads GET /metrics/endpoint as the EPP's scraper does (no
// key unless c has one; legacy metric names).
func (c client) scrapePicker() (pickerView, int) {
	c.t.Helper()
	code, body, _ := c.do("GET", "/metrics/endpoint", "")
	if code != 200 {
		return pickerView{}, code
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		c.t.Fatalf("parsing /metrics/endpoint: %v\n%s", err, body)
	}
	var v pickerView
	info := fams[metrics.EndpointLoRAInfo]
	if info == nil || len(info.Metric) != 1 {
		c.t.Fatalf("want one %s series:\n%s", metrics.EndpointLoRAInfo, body)
	}
	for _, l := range info.Metric[0].Label {
		switch l.GetName() {
		case "running_lora_adapters":
			v.running = l.GetValue()
		case "waiting_lora_adapters":
			v.waiting = l.GetValue()
		case "max_lora":
			v.max = l.GetValue()
		}
	}
	gauge := func(name string) float64 {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 || len(f.Metric[0].Label) != 0 {
			c.t.Fatalf("want one unlabelled %s:\n%s", name, body)
		}
		return f.Metric[0].GetGauge().GetValue()
	}
	v.waitingReqs, v.runningReqs = gauge(metrics.EndpointWaiting), gauge(metrics.EndpointRunning)
	v.memory, v.leaving = gauge(metrics.EndpointMemoryUsage), gauge(metrics.EndpointLeaving)
	return v, code
}

var pickerListening = regexp.MustCompile(`serving /metrics/endpoint without a key for an endpoint picker\s+\{"addr": "([^"]+)"`)

func TestEndpointMetrics(t *testing.T) {
	b := build(t)
	cmd, url, logs := startLogged(t, b, writeConfig(t, b, pickerModels+`
endpoint_picker: {listen: "127.0.0.1:0", leave: 30s}
`))
	admin, user, anon := client{t, url, "admin-key"}, client{t, url, "user-key"}, client{t, url, ""}

	// The keys of /metrics on the main listener.
	if _, code := anon.scrapePicker(); code != 401 {
		t.Errorf("GET /metrics/endpoint without a key: %d, want 401", code)
	}
	if _, code := user.scrapePicker(); code != 401 {
		t.Errorf("GET /metrics/endpoint with an API key: %d, want 401 (it is an admin path)", code)
	}
	v, code := admin.scrapePicker()
	if code != 200 {
		t.Fatalf("GET /metrics/endpoint with the admin key: %d", code)
	}
	// Nothing loaded, and a model fits: room for one.
	if v.running != "" || v.waiting != "" || v.max != "1" || v.memory != 0 || v.leaving != 0 {
		t.Errorf("idle: %+v, want nothing running or waiting, max_lora 1, no memory in use", v)
	}

	// The listener of its own: no key, and that path only.
	m := pickerListening.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("hotswap did not say where the endpoint picker's listener is:\n%s", logs)
	}
	side := client{t, "http://" + m[1], ""}
	if _, code := side.scrapePicker(); code != 200 {
		t.Errorf("GET /metrics/endpoint on endpoint_picker.listen without a key: %d, want 200", code)
	}
	for _, path := range []string{"/metrics", "/v1/models", "/admin/running"} {
		if code, _, _ := side.do("GET", path, ""); code != 404 {
			t.Errorf("GET %s on endpoint_picker.listen: %d, want 404", path, code)
		}
	}

	// a loaded, with its alias, variant and the variant's alias; b does
	// not fit beside it: no room.
	user.chat("a")
	v, _ = side.scrapePicker()
	if v.running != "a,alias-a,a-fast,quick" || v.waiting != "" || v.max != "4" {
		t.Errorf("a loaded: %+v, want a and its names running, max_lora 4", v)
	}
	if v.memory < 0.79 || v.memory > 0.81 {
		t.Errorf("a loaded: memory in use %v, want 0.8 of limit_ram", v.memory)
	}

	// A stream (two seconds) is running on a's backend.
	done := make(chan int, 1)
	go func() {
		code, _, _ := user.do("POST", "/v1/chat/completions", `{"model":"a","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		done <- code
	}()
	if !mocktest.Eventually(5*time.Second, func() bool { v, _ := side.scrapePicker(); return v.runningReqs == 1 }) {
		t.Errorf("a request on a backend is not counted as running: %+v", v)
	}
	<-done

	// Told to stop, it serves on and says it is leaving.
	cmd.Process.Signal(syscall.SIGTERM)
	if !mocktest.Eventually(5*time.Second, func() bool { v, _ := side.scrapePicker(); return v.leaving == 1 }) {
		t.Fatalf("not leaving after SIGTERM:\n%s", logs)
	}
	if v, _ := side.scrapePicker(); v.max != "4" {
		t.Errorf("leaving: max_lora %s, want 4 (no room claimed)", v.max)
	}
	if code, body, _ := user.do("POST", "/v1/chat/completions", `{"model":"alias-a","messages":[{"role":"user","content":"hi"}]}`); code != 200 {
		t.Errorf("a request while leaving: %d %s", code, body)
	}
	// A second signal cuts the leave short.
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("a second SIGTERM did not end the leave:\n%s", logs)
	}
}

func TestEndpointMetricsOpen(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, pickerModels+`
endpoint_picker: {open: true}
`))
	anon := client{t, url, ""}
	if _, code := anon.scrapePicker(); code != 200 {
		t.Errorf("GET /metrics/endpoint without a key, open: %d, want 200", code)
	}
	// Only that path: /metrics keeps its key.
	if code, _, _ := anon.do("GET", "/metrics", ""); code != 401 {
		t.Errorf("GET /metrics without a key: %d, want 401", code)
	}
	if code, _, _ := anon.do("POST", "/metrics/endpoint", "{}"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics/endpoint: %d, want 405", code)
	}
}
