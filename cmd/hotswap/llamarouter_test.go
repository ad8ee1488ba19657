package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// llama.cpp's router API for models through the hotswap binary: what
// llama.cpp's web UI (or Open WebUI) sees while a model loads and unloads.

const llamaRouterConfig = `
ports: 31300-31399
stop_timeout: 2s
api_keys: [user-key]
admin_keys: [admin-key]
models:
  big:
    cmd: MOCK -port ${PORT} -model ${MODEL} -startup 1s
    variants:
      big-precise: {params: {set: {temperature: 0}}}
  other: {cmd: "MOCK -port ${PORT} -model ${MODEL}"}
`

// llamaStatus is the status value GET /models gives model.
func llamaStatus(c client, model string) string {
	c.t.Helper()
	var list struct {
		Data []struct {
			ID     string `json:"id"`
			Status struct {
				Value string `json:"value"`
			} `json:"status"`
		} `json:"data"`
	}
	c.json("GET", "/models", "", 200, &list)
	for _, e := range list.Data {
		if e.ID == model {
			return e.Status.Value
		}
	}
	c.t.Fatalf("GET /models has no %q", model)
	return ""
}

// TestLlamaRouterLoadUnload: while a load of a model that takes 1s to
// start runs, GET /models says unloaded, then loading, then loaded; an
// unload takes it back to unloaded; /models/sse says the same moves, in
// order, in llama.cpp's records.
func TestLlamaRouterLoadUnload(t *testing.T) {
	b := build(t)
	_, url := start(t, b, writeConfig(t, b, llamaRouterConfig))
	user, admin := client{t, url, "user-key"}, client{t, url, "admin-key"}

	req, _ := http.NewRequest("GET", url+"/models/sse", nil)
	req.Header.Set("Authorization", "Bearer user-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /models/sse: %d %v", resp.StatusCode, resp.Header)
	}
	var mu sync.Mutex
	var seen []string // "model event status", in order
	read := make(chan struct{})
	t.Cleanup(func() { resp.Body.Close(); <-read })
	go func() {
		defer close(read)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var r struct {
				Model string `json:"model"`
				Event string `json:"event"`
				Data  struct {
					Status string `json:"status"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(data), &r) == nil {
				mu.Lock()
				seen = append(seen, r.Model+" "+r.Event+" "+r.Data.Status)
				mu.Unlock()
			}
		}
	}()

	if got := llamaStatus(user, "big"); got != "unloaded" {
		t.Fatalf("big before its load: %s", got)
	}
	loaded := make(chan int, 1)
	go func() {
		code, _, _ := admin.do("POST", "/models/load", `{"model":"big"}`)
		loaded <- code
	}()
	if !mocktest.Eventually(5*time.Second, func() bool { return llamaStatus(user, "big") == "loading" }) {
		t.Fatal("big never listed as loading while its load ran")
	}
	if got := llamaStatus(user, "big-precise"); got != "loading" {
		t.Errorf("its variant while it loads: %s", got)
	}
	select {
	case code := <-loaded:
		if code != 200 {
			t.Fatalf("load: %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("load never answered")
	}
	if got := llamaStatus(user, "big"); got != "loaded" {
		t.Fatalf("big once its load answered: %s", got)
	}
	if got := llamaStatus(user, "other"); got != "unloaded" {
		t.Errorf("other, never loaded: %s", got)
	}

	admin.json("POST", "/models/unload", `{"model":"big"}`, 200, nil)
	if got := llamaStatus(user, "big"); got != "unloaded" {
		t.Fatalf("big once its unload answered: %s", got)
	}

	want := []string{
		"big model_status loading", "big-precise model_status loading",
		"big status_change loaded", "big-precise status_change loaded",
		"big status_change unloaded", "big-precise status_change unloaded",
	}
	if !mocktest.Eventually(5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= len(want)
	}) {
		t.Fatalf("events %v, want %v", seen, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, "; ") != strings.Join(want, "; ") {
		t.Errorf("events\n%v, want\n%v", seen, want)
	}
}
