package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// failureLine is one series of hotswap_backend_start_failures_total.
var failureLine = regexp.MustCompile(`(?m)^hotswap_backend_start_failures_total\{cause="([^"]+)",model="([^"]+)"\} (\S+)$`)

// TestMetricsExistAtZero: what a dashboard plots per model is scraped from
// the start, at 0, for every model, and for one a reload adds; a failure
// counts in the series that was there (the swapper's causes and the
// metrics' agree), and a removed model's series go.
func TestMetricsExistAtZero(t *testing.T) {
	b := build(t)
	cfg := writeConfig(t, b, `
ports: 22000-22999
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  bad: {cmd: "MOCK -port ${PORT} -model ${MODEL} -no-such-flag"}
`)
	_, url := start(t, b, cfg)
	c := client{t, url, ""}
	scrape := func() string {
		t.Helper()
		code, body, _ := c.do("GET", "/metrics", "")
		if code != 200 {
			t.Fatalf("GET /metrics: %d", code)
		}
		return string(body)
	}
	// failures maps model to its causes' counts.
	failures := func(text string) map[string]map[string]string {
		out := map[string]map[string]string{}
		for _, m := range failureLine.FindAllStringSubmatch(text, -1) {
			if out[m[2]] == nil {
				out[m[2]] = map[string]string{}
			}
			out[m[2]][m[1]] = m[3]
		}
		return out
	}
	causes := []string{"exited", "memory_not_back", "not_healthy", "not_started", "out_of_memory"}
	zeros := func(text, model string) {
		t.Helper()
		for _, series := range []string{
			`hotswap_backend_starts_total{model="` + model + `"} 0`,
			`hotswap_backend_crashes_total{model="` + model + `"} 0`,
			`hotswap_insufficient_memory_total{model="` + model + `"} 0`,
			`hotswap_evictions_total{model="` + model + `",reason="making_room"} 0`,
			`hotswap_evictions_total{model="` + model + `",reason="ttl"} 0`,
			`hotswap_evictions_total{model="` + model + `",reason="unload"} 0`,
		} {
			if !strings.Contains(text, series+"\n") {
				t.Errorf("no %s", series)
			}
		}
		got := failures(text)[model]
		for _, cause := range causes {
			if got[cause] != "0" {
				t.Errorf("start_failures{%s,%s} = %q, want 0", model, cause, got[cause])
			}
		}
	}
	first := scrape()
	zeros(first, "a")
	zeros(first, "bad")

	// bad's backend exits at once: its "exited" series counts it, and no
	// cause appears that was not there.
	if code, body, _ := c.do("POST", "/v1/chat/completions", `{"model":"bad","messages":[]}`); code != 503 {
		t.Fatalf("bad: %d %s", code, body)
	}
	var after map[string]string
	if !mocktest.Eventually(5*time.Second, func() bool {
		after = failures(scrape())["bad"]
		return after["exited"] == "1"
	}) {
		t.Fatalf("bad's failure: %v", after)
	}
	var seen []string
	for cause := range after {
		seen = append(seen, cause)
	}
	if slices.Sort(seen); !slices.Equal(seen, causes) {
		t.Errorf("bad's causes after its failure: %v, want %v", seen, causes)
	}

	// A model a reload adds has its zeros at once; a removed one's series
	// go once it is forgotten.
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(`
ports: 22000-22999
models:
  a: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
  added: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
`, "MOCK", b.mock)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.json("POST", "/admin/reload", "", 200, nil)
	zeros(scrape(), "added")
	if !mocktest.Eventually(10*time.Second, func() bool { return !strings.Contains(scrape(), `model="bad"`) }) {
		t.Error("a removed model's series are still scraped")
	}
}
