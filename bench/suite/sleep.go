package main

// The sleep scenario (issue 31): two mock models that each take 2 s to
// start and 200 ms to wake (vLLM's sleep mode, as the mock serves it),
// with memory for one of them awake beside the other asleep, never both
// awake. Requests alternate between them, one at a time, so that every
// request but the first two needs a swap. It runs once with the models'
// sleep configured and once without: the swaps take the wake time in the
// first run and the start time in the second.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	sleepStartup  = "2s"
	sleepWake     = "200ms"
	sleepHold     = "256MiB"
	sleepNeed     = "280MiB" // memory.ram declared
	sleepKeep     = "48MiB"  // sleep.memory.ram declared: what a mock keeps asleep
	sleepLimitRAM = "400MiB" // one awake and one asleep; not two awake
)

// SleepRun is one run of the scenario.
type SleepRun struct {
	Sleep    bool `json:"sleep"` // the models' sleep configured
	Requests int  `json:"requests"`
	Errors   int  `json:"errors"`
	Starts   int  `json:"starts"`
	Wakes    int  `json:"wakes"`
	// Swap latencies: the requests that found their model stopped or
	// asleep (all but the first two), in milliseconds.
	SwapP50Ms float64 `json:"swap_p50_ms"`
	SwapMaxMs float64 `json:"swap_max_ms"`
	SwapMinMs float64 `json:"swap_min_ms"`
	// StartTookS and WakeTookS are hotswap's own figures for the models'
	// last start and wake (/admin/models), averaged over the two.
	StartTookS float64 `json:"start_took_s"`
	WakeTookS  float64 `json:"wake_took_s,omitempty"`
}

// SleepScenario is what sleep.json holds.
type SleepScenario struct {
	Date    time.Time  `json:"date"`
	Machine Machine    `json:"machine"`
	Command string     `json:"command"`
	Setup   string     `json:"setup"`
	Runs    []SleepRun `json:"runs"`
}

// runSleep runs the scenario with and without sleep and writes sleep.json
// to out.
func runSleep(ctx context.Context, hotswap, cfgPath, out string, short bool) error {
	rounds := 10
	if short {
		rounds = 4
	}
	sc := &SleepScenario{Date: time.Now().UTC(), Machine: machine(),
		Command: "go run ./bench/suite -scenario sleep -hotswap " + hotswap + " -config " + cfgPath + " -out " + out,
		Setup: fmt.Sprintf("two mocks (-startup %s -wake-time %s -hold %s -sleep-mode, memory.ram %s, sleep: vllm with memory.ram %s); "+
			"memory.limit_ram %s; %d rounds of one request to each, in turn, one at a time", sleepStartup, sleepWake, sleepHold,
			sleepNeed, sleepKeep, sleepLimitRAM, rounds)}
	if short {
		sc.Command += " -short"
	}
	for _, sleep := range []bool{true, false} {
		fmt.Fprintf(os.Stderr, "suite: sleep scenario, sleep %v\n", sleep)
		r, err := sleepRun(ctx, hotswap, cfgPath, sleep, rounds)
		if err != nil {
			return fmt.Errorf("sleep scenario (sleep %v): %w", sleep, err)
		}
		fmt.Printf("sleep %-5v requests %d errors %d starts %d wakes %d swap p50 %.0fms (min %.0f, max %.0f) start %.2fs wake %.2fs\n",
			sleep, r.Requests, r.Errors, r.Starts, r.Wakes, r.SwapP50Ms, r.SwapMinMs, r.SwapMaxMs, r.StartTookS, r.WakeTookS)
		sc.Runs = append(sc.Runs, *r)
	}
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "sleep.json"), append(b, '\n'), 0o644)
}

func sleepRun(ctx context.Context, hotswap, cfgPath string, sleep bool, rounds int) (*SleepRun, error) {
	dir, err := os.MkdirTemp("", "hotswap-sleep-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfgFile, err := sleepConfig(cfgPath, dir, filepath.Join(filepath.Dir(hotswap), "mockbackend"), sleep)
	if err != nil {
		return nil, err
	}
	base, stop, err := serveScenario(ctx, hotswap, cfgFile, dir)
	if err != nil {
		return nil, err
	}
	defer stop()
	c := &http.Client{Timeout: time.Minute}
	r := &SleepRun{Sleep: sleep}
	var swaps []float64
	for i := range 2 * rounds {
		model := []string{"model-a", "model-b"}[i%2]
		body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`
		begin := time.Now()
		req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(begin)
		r.Requests++
		if resp.StatusCode != 200 {
			r.Errors++
			continue
		}
		if i >= 2 {
			swaps = append(swaps, float64(took.Microseconds())/1000)
		}
	}
	slices.Sort(swaps)
	if n := len(swaps); n > 0 {
		r.SwapP50Ms, r.SwapMinMs, r.SwapMaxMs = round2(swaps[n/2]), round2(swaps[0]), round2(swaps[n-1])
	}
	if err := sleepFigures(c, base, r); err != nil {
		return nil, err
	}
	return r, nil
}

// sleepFigures reads the starts and wakes, and hotswap's mean start and
// wake times, from /metrics.
func sleepFigures(c *http.Client, base string, r *SleepRun) error {
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	total := func(name string) float64 {
		var n float64
		for _, line := range strings.Split(string(text), "\n") {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v); err == nil {
				n += v
			}
		}
		return n
	}
	r.Starts = int(total("hotswap_backend_starts_total"))
	r.Wakes = int(total("hotswap_backend_wakes_total"))
	if n := total("hotswap_backend_start_seconds_count"); n > 0 {
		r.StartTookS = round2(total("hotswap_backend_start_seconds_sum") / n)
	}
	if n := total("hotswap_backend_wake_seconds_count"); n > 0 {
		r.WakeTookS = round2(total("hotswap_backend_wake_seconds_sum") / n)
	}
	return nil
}

// sleepConfig writes cfgPath's settings with the scenario's two models
// and memory limit in place of its own.
func sleepConfig(cfgPath, dir, mock string, sleep bool) (string, error) {
	models := map[string]any{}
	for _, name := range []string{"model-a", "model-b"} {
		m := map[string]any{
			"cmd": mock + " -port ${PORT} -model ${MODEL} -startup " + sleepStartup + " -hold " + sleepHold +
				" -sleep-mode -wake-time " + sleepWake + " -tokens 4 -progress-interval 0",
			"memory": map[string]any{"ram": sleepNeed},
		}
		if sleep {
			m["sleep"] = map[string]any{"sleep": "POST /sleep?level=1", "wake": "POST /wake_up",
				"memory": map[string]any{"ram": sleepKeep}}
		}
		models[name] = m
	}
	return scenarioConfig(cfgPath, dir, sleepLimitRAM, models, nil)
}
