package main

// The swap-cost scenario (issue 31): small models that load fast and large
// ones that load slowly, in memory that holds only some of them, asked for
// by a seeded workload, under scheduling.eviction lru and cost, each with
// hotswap's read-ahead and without it. What is compared is what the
// evictions cost afterwards: the time spent loading backends, how many
// starts and evictions, and the requests' latency.
//
// Each model reads a weights file as it loads (the mock's -weights), which
// it drops from the page cache when it stops (-weights-cold), as on a
// machine whose page cache cannot hold every model it swaps between: a
// start reads its file from disk, unless hotswap read it back while the
// start waited. swapLatency, when set, makes each request take that long,
// so that starts wait for busy victims' drains more often.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/hotswap/hotswap/bench/loadgen"
)

// swapModel is one mock model of the scenario.
type swapModel struct {
	name    string
	startup string // the mock's -startup
	hold    string // the mock's -hold
	ram     string // memory.ram declared
	weights int64  // the size of its weights file
}

// A large model takes ten times a small one's start (as a 20 GB model
// does a 2 GB one's), and a cold read of its weights adds to it.
var swapModels = []swapModel{
	{"small-1", "200ms", "32MiB", "48MiB", 64 << 20},
	{"small-2", "200ms", "32MiB", "48MiB", 64 << 20},
	{"small-3", "200ms", "32MiB", "48MiB", 64 << 20},
	{"large-1", "2s", "128MiB", "160MiB", 1 << 30},
	{"large-2", "2s", "128MiB", "160MiB", 1 << 30},
}

// swapLatency is how long the mocks take to answer a request: none, as
// when the scenario's figures were first taken (BENCHMARKS.md also gives
// them with 300 ms, from the commit before this one was set to 0s).
const swapLatency = "0s"

// swapLimitRAM holds one large and two small models (160 + 2×48), or all
// three small ones, never both large ones.
const swapLimitRAM = "256MiB"

// swapWorkloads are the request mixes: Zipf-like popularity by rank (1/k:
// the small models popular, the large ones occasional); a desktop's (one
// large chat model asked for often, and small ones, an embedder, speech
// in and out, taking turns beside it: one large and two small fit); and
// uniform.
var swapWorkloads = []struct{ name, models string }{
	{"zipf", "small-1:60,small-2:30,small-3:20,large-1:15,large-2:12"},
	{"desktop", "large-1:30,small-1:25,small-2:25,small-3:20"},
	{"uniform", "small-1,small-2,small-3,large-1,large-2"},
}

var swapPolicies = []string{"lru", "cost"}

// swapVariant is one bar of each workload: an eviction policy, with or
// without read-ahead.
type swapVariant struct {
	eviction  string
	readAhead bool
}

func (v swapVariant) String() string {
	if v.readAhead {
		return v.eviction
	}
	return v.eviction + ", no read-ahead"
}

func swapVariants() []swapVariant {
	var out []swapVariant
	for _, ra := range []bool{true, false} {
		for _, pol := range swapPolicies {
			out = append(out, swapVariant{pol, ra})
		}
	}
	return out
}

// SwapCostRun is one policy on one workload.
type SwapCostRun struct {
	Workload   string             `json:"workload"`
	Eviction   string             `json:"eviction"`
	ReadAhead  bool               `json:"read_ahead"`
	Command    string             `json:"command"`
	Requests   int                `json:"requests"` // answered
	Errors     int                `json:"errors"`
	ElapsedS   float64            `json:"elapsed_s"`
	LoadingS   float64            `json:"loading_s"` // sum of hotswap_backend_start_seconds over the run
	Starts     int                `json:"starts"`
	Evictions  int                `json:"evictions"`
	P50Ms      float64            `json:"p50_ms"`
	P99Ms      float64            `json:"p99_ms"`
	StartsBy   map[string]int     `json:"starts_by_model"`
	LoadingByS map[string]float64 `json:"loading_s_by_model"`
}

// SwapCost is what swapcost.json holds.
type SwapCost struct {
	Date    time.Time     `json:"date"`
	Machine Machine       `json:"machine"`
	Command string        `json:"command"`
	Setup   string        `json:"setup"`
	Runs    []SwapCostRun `json:"runs"`
	Plot    string        `json:"plot"`
}

func swapSetup() string {
	var parts []string
	for _, m := range swapModels {
		parts = append(parts, fmt.Sprintf("%s (-startup %s -hold %s -weights of %d MiB -weights-cold, memory.ram %s)",
			m.name, m.startup, m.hold, m.weights>>20, m.ram))
	}
	return strings.Join(parts, "; ") + "; requests -latency " + swapLatency + "; memory.limit_ram " + swapLimitRAM +
		", scheduling.policy fifo"
}

// runSwapCost runs every workload under every eviction policy and writes
// swapcost.json and swapcost.svg to out. The page is not regenerated: the
// scenario's section of BENCHMARKS.md is written by hand from the JSON.
func runSwapCost(ctx context.Context, hotswap, cfgPath, out string, short bool) error {
	requests := 160
	if short {
		requests = 40
	}
	sc := &SwapCost{Date: time.Now().UTC(), Machine: machine(), Setup: swapSetup(),
		Command: "go run ./bench/suite -scenario swapcost -hotswap " + hotswap + " -config " + cfgPath + " -out " + out}
	if short {
		sc.Command += " -short"
	}
	weights, err := os.MkdirTemp("", "hotswap-swapcost-weights-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(weights)
	if err := writeWeights(weights); err != nil {
		return err
	}
	for _, w := range swapWorkloads {
		for _, v := range swapVariants() {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "suite: swap cost, %s workload, eviction %s\n", w.name, v)
			args := []string{"-models", w.models, "-mix", "-users", "2", "-requests", strconv.Itoa(requests),
				"-max-tokens", "8", "-seed", "31"}
			r, err := swapCostRun(ctx, hotswap, cfgPath, weights, v, args)
			if err != nil {
				return fmt.Errorf("swap cost, %s, %s: %w", w.name, v, err)
			}
			r.Workload = w.name
			fmt.Printf("%-8s %-22s requests %d errors %d elapsed %.1fs loading %.1fs starts %d evictions %d p50 %.0fms p99 %.0fms\n",
				w.name, v, r.Requests, r.Errors, r.ElapsedS, r.LoadingS, r.Starts, r.Evictions, r.P50Ms, r.P99Ms)
			sc.Runs = append(sc.Runs, *r)
		}
	}
	svg, err := swapCostPlot(sc.Runs)
	if err != nil {
		return err
	}
	sc.Plot = "swapcost.svg"
	if err := os.WriteFile(filepath.Join(out, sc.Plot), svg, 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "swapcost.json"), append(b, '\n'), 0o644)
}

// writeWeights writes each model's weights file into dir, and syncs it, so
// that the mocks' drops from the page cache take (the kernel drops only
// clean pages).
func writeWeights(dir string) error {
	for _, m := range swapModels {
		f, err := os.Create(filepath.Join(dir, m.name+".gguf"))
		if err != nil {
			return err
		}
		block := bytes.Repeat([]byte{0x5a}, 1<<20)
		for n := int64(0); n < m.weights; n += int64(len(block)) {
			if _, err := f.Write(block[:min(int64(len(block)), m.weights-n)]); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

func swapCostRun(ctx context.Context, hotswap, cfgPath, weights string, v swapVariant, args []string) (*SwapCostRun, error) {
	dir, err := os.MkdirTemp("", "hotswap-swapcost-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfgFile, err := swapCostConfig(cfgPath, dir, filepath.Join(filepath.Dir(hotswap), "mockbackend"), weights, v)
	if err != nil {
		return nil, err
	}
	base, stop, err := serveScenario(ctx, hotswap, cfgFile, dir)
	if err != nil {
		return nil, err
	}
	defer stop()
	before, err := startSeconds(base)
	if err != nil {
		return nil, err
	}
	o, err := loadgen.Parse(append([]string{"-target", "hotswap=" + base}, args...), io.Discard)
	if err != nil {
		return nil, err
	}
	rep, err := loadgen.Run(ctx, o, nil)
	if err != nil {
		return nil, err
	}
	after, err := startSeconds(base)
	if err != nil {
		return nil, err
	}
	t := rep.Targets[0]
	r := &SwapCostRun{Eviction: v.eviction, ReadAhead: v.readAhead,
		Command: "hotswap bench -target hotswap=URL " + strings.Join(args, " ") + "\n# hotswap serving the scenario's config with scheduling.eviction " +
			v.eviction + fmt.Sprintf(" and read_ahead %v", v.readAhead),
		Requests: t.Total.Answered, Errors: t.Total.Errors, ElapsedS: t.ElapsedS,
		P50Ms: t.Total.LatencyMs.P50, P99Ms: t.Total.LatencyMs.P99,
		StartsBy: map[string]int{}, LoadingByS: map[string]float64{}}
	for m, s := range after {
		d := s - before[m]
		r.LoadingS += d
		r.LoadingByS[m] = round2(d)
	}
	r.LoadingS = round2(r.LoadingS)
	if h := t.Hotswap; h != nil {
		r.Starts, r.Evictions = h.Starts, h.Evictions
		for _, m := range h.Models {
			r.StartsBy[m.Model] = m.Starts
		}
	}
	return r, nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// swapCostConfig writes cfgPath's settings with the scenario's models,
// memory limit, eviction policy and read-ahead in place of its own.
func swapCostConfig(cfgPath, dir, mock, weights string, v swapVariant) (string, error) {
	models := map[string]any{}
	for _, m := range swapModels {
		models[m.name] = map[string]any{
			"cmd": mock + " -port ${PORT} -model ${MODEL} -startup " + m.startup + " -hold " + m.hold + " -tokens 8" +
				" -latency " + swapLatency + " -weights " + filepath.Join(weights, m.name+".gguf") + " -weights-cold",
			"kind":       "llm",
			"memory":     map[string]any{"ram": m.ram},
			"read_ahead": v.readAhead,
		}
	}
	return scenarioConfig(cfgPath, dir, swapLimitRAM, models, func(section func(string) map[string]any) {
		section("scheduling")["policy"] = "fifo"
		section("scheduling")["eviction"] = v.eviction
		section("server")["max_conns_per_ip"] = 1000
		section("server")["max_conns"] = 2000
	})
}

// startSeconds reads hotswap_backend_start_seconds's sum by model from
// /metrics.
func startSeconds(base string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	const name = "hotswap_backend_start_seconds_sum{"
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		labels, value, ok := strings.Cut(line[len(name):], "} ")
		if !ok {
			continue
		}
		model := ""
		if _, v, ok := strings.Cut(labels, `model="`); ok {
			model, _, _ = strings.Cut(v, `"`)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("GET /metrics: %q: %w", line, err)
		}
		out[model] += f
	}
	return out, sc.Err()
}

// swapCostPlot draws three panels side by side (time loading, starts, p99
// latency), each with a bar per policy for every workload.
func swapCostPlot(runs []SwapCostRun) ([]byte, error) {
	metrics := []struct {
		title string
		get   func(r SwapCostRun) float64
	}{
		{"Time spent loading (s)", func(r SwapCostRun) float64 { return r.LoadingS }},
		{"Backend starts", func(r SwapCostRun) float64 { return float64(r.Starts) }},
		{"p99 latency (ms)", func(r SwapCostRun) float64 { return r.P99Ms }},
	}
	// lru, cost; then the same, lighter, without read-ahead.
	colors := []color.Color{color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff},
		color.RGBA{0x9e, 0xc5, 0xe6, 0xff}, color.RGBA{0xff, 0xc9, 0x94, 0xff}}
	var names []string
	for _, w := range swapWorkloads {
		names = append(names, w.name)
	}
	plots := make([][]*plot.Plot, 1)
	for _, m := range metrics {
		p := plot.New()
		p.Title.Text = m.title
		w := vg.Points(12)
		variants := swapVariants()
		top := 0.0
		for i, v := range variants {
			vals := make(plotter.Values, len(swapWorkloads))
			for j, wl := range swapWorkloads {
				for _, r := range runs {
					if r.Workload == wl.name && r.Eviction == v.eviction && r.ReadAhead == v.readAhead {
						vals[j] = m.get(r)
					}
				}
			}
			for _, x := range vals {
				top = max(top, x)
			}
			bars, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			bars.Color = colors[i%len(colors)]
			bars.LineStyle.Width = 0
			bars.Offset = w * vg.Length(2*i-len(variants)+1) / 2
			p.Add(bars)
			p.Legend.Add(v.String(), bars)
		}
		p.Legend.Top = true
		p.NominalX(names...)
		p.Y.Min = 0
		p.Y.Max = top * 1.6 // room above the bars for the legend
		plots[0] = append(plots[0], p)
	}
	width, height := vg.Points(780), vg.Points(280)
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	t := draw.Tiles{Rows: 1, Cols: len(metrics), PadX: vg.Points(10), PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(4)}
	canvases := plot.Align(plots, t, dc)
	for j, p := range plots[0] {
		p.Draw(canvases[0][j])
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
