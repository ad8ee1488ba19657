package proxy_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hotswap/hotswap/metrics"
	"github.com/hotswap/hotswap/proxy"
)

// The metrics count variants for the proxy.
var _ proxy.VariantMetrics = (*metrics.Metrics)(nil)

// renameConfig's backends check the model name as vLLM does: only
// hotswap's upstream_model gets them to answer.
const renameConfig = `
ports: 20000-20999
scheduling: {stream_keepalive: 50ms}
models:
  slow:
    cmd: MOCK -port ${PORT} -model ${MODEL} -served-model-name served-slow -stream-interval 100ms -tokens 20 -progress-interval 0
    upstream_model: served-slow
    parallel: 4
    aliases: [slow-alias]
    variants:
      slow-v: {params: {set: {temperature: 0}}}
  cold:
    cmd: MOCK -port ${PORT} -model ${MODEL} -served-model-name served-cold -startup 300ms -stream-interval 1ms -tokens 3 -progress-interval 0
    upstream_model: served-cold
`

// eventModel is the model an event's JSON names, or "" for [DONE].
func eventModel(t *testing.T, data string) string {
	t.Helper()
	if data == "[DONE]" {
		return ""
	}
	var ev struct{ Model string }
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		t.Fatalf("event %q: %v", data, err)
	}
	return ev.Model
}

// TestRenamedStreamStillStreams: a renamed stream reaches the client event
// by event: its first events are read while the backend is still
// generating the rest.
func TestRenamedStreamStillStreams(t *testing.T) {
	s := newStack(t, renameConfig)
	resp, err := s.client.Post(s.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"slow-alias","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("status %d, content length %q", resp.StatusCode, resp.Header.Get("Content-Length"))
	}
	br := bufio.NewReader(resp.Body)
	var models []string
	for len(models) < 3 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d events: %v", len(models), err)
		}
		if d, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
			models = append(models, eventModel(t, d))
		}
	}
	// Three events in, and the backend has sent at most a few of its
	// twenty tokens: nothing waited for the whole answer.
	st := s.do("GET", "/upstream/slow/mock/stats", "", nil)
	var stats struct {
		InFlight int `json:"in_flight"`
		Tokens   int `json:"tokens"`
	}
	if err := json.Unmarshal(st.body, &stats); err != nil {
		t.Fatal(err)
	}
	if stats.InFlight != 1 || stats.Tokens >= 20 {
		t.Errorf("the backend is done already (%+v): the stream was held back", stats)
	}
	for _, m := range models {
		if m != "slow-alias" {
			t.Errorf("an event for %q", m)
		}
	}
}

// TestRenamedAfterWaiting: a stream that waits for its model's start (and
// is sent keep-alive comments meanwhile) is renamed as well.
func TestRenamedAfterWaiting(t *testing.T) {
	s := newStack(t, renameConfig)
	resp, events, err := s.stream("cold", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %d", err, resp.StatusCode)
	}
	if len(events) < 4 || events[len(events)-1].data != "[DONE]" {
		t.Fatalf("events %v", events)
	}
	for _, e := range events[:len(events)-1] {
		if m := eventModel(t, e.data); m != "cold" {
			t.Errorf("an event for %q: %s", m, e.data)
		}
	}
}

// TestVariantRenamed: a variant's answers carry the variant's name.
func TestVariantRenamed(t *testing.T) {
	s := newStack(t, renameConfig)
	r := s.chat("slow-v", "hi")
	if r.status != 200 || r.json(t)["model"] != "slow-v" {
		t.Errorf("%d %s", r.status, r.body)
	}
	if r.header.Get("X-Mock-Model") != "slow" {
		t.Errorf("served by %q", r.header.Get("X-Mock-Model"))
	}
	// The answer's length was the backend's; it is not now.
	req, _ := http.NewRequest("POST", s.url+"/v1/embeddings", strings.NewReader(`{"model":"slow","input":"x"}`))
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var emb struct{ Model string }
	err = json.NewDecoder(resp.Body).Decode(&emb)
	resp.Body.Close()
	if err != nil || emb.Model != "slow" {
		t.Errorf("embeddings: %v %q", err, emb.Model)
	}
}
