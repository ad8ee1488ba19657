package loadgen

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Report is everything one `hotswap bench` run measured; -json writes it
// as it is. README documents the fields.
type Report struct {
	Started     time.Time      `json:"started"`
	Workload    WorkloadReport `json:"workload"`
	Interrupted bool           `json:"interrupted"` // stopped by Ctrl-C: the figures are of what ran
	Notes       []string       `json:"notes,omitempty"`
	Targets     []TargetReport `json:"targets"`
}

// WorkloadReport says what was sent, so that a report can be reproduced.
type WorkloadReport struct {
	Models    []WorkloadModel `json:"models"`
	Loop      string          `json:"loop"` // closed or open
	Users     int             `json:"users,omitempty"`
	Rate      float64         `json:"rate,omitempty"`
	ThinkMs   float64         `json:"think_ms,omitempty"`
	Mix       bool            `json:"mix,omitempty"`
	Requests  int             `json:"requests,omitempty"`
	DurationS float64         `json:"duration_s,omitempty"`
	Stream    bool            `json:"stream"`
	MaxTokens int             `json:"max_tokens"`
	Seed      uint64          `json:"seed"`
}

// WorkloadModel is a model of the workload and what it was sent.
type WorkloadModel struct {
	Model  string  `json:"model"`
	Weight float64 `json:"weight"`
	Kind   string  `json:"kind"` // chat or embedding
}

// TargetReport is one target's figures: all models together, and each.
type TargetReport struct {
	Label    string         `json:"label"`
	URL      string         `json:"url"`
	ElapsedS float64        `json:"elapsed_s"` // from the first request to the last answer's end
	Total    Figures        `json:"total"`
	Models   []ModelFigures `json:"models"`
	// Hotswap is set when the target is hotswap and its /metrics could be
	// read: what it did during the run.
	Hotswap  *HotswapFigures `json:"hotswap,omitempty"`
	Timeline Timeline        `json:"timeline"`
}

// ModelFigures are one model's figures on a target; Name is what the
// target was asked for, when -model-map renamed it.
type ModelFigures struct {
	Model string `json:"model"`
	Name  string `json:"name,omitempty"`
	Figures
}

// Figures are the measures of a set of requests. Durations are in
// milliseconds. Latency counts from when a request was due to leave (in
// an open loop that fell behind, before it left) to the end of its
// answer, for answered requests.
type Figures struct {
	Sent      int          `json:"sent"`
	Answered  int          `json:"answered"`
	Errors    int          `json:"errors"`
	Cancelled int          `json:"cancelled,omitempty"` // in flight at Ctrl-C
	ErrorRate float64      `json:"error_rate"`          // errors / (answered + errors)
	ErrorsBy  []ErrorCount `json:"errors_by,omitempty"`
	RPS       float64      `json:"requests_per_s"` // answered a second
	LatencyMs Percentiles  `json:"latency_ms"`
	// Streams only.
	TTFTMs           *Percentiles `json:"ttft_ms,omitempty"`
	InterTokenMs     float64      `json:"inter_token_ms,omitempty"`
	OutputTokens     int64        `json:"output_tokens"`
	OutputTokensPerS float64      `json:"output_tokens_per_s"`
	TokensCountedBy  string       `json:"tokens_counted_by,omitempty"` // usage, chunks or both
}

// ErrorCount is how many requests failed one way: the HTTP status (0 when
// none came) and the OpenAI error code, or what went wrong on the wire
// (connection_refused, timeout, connection_lost, stream_cut, ...).
type ErrorCount struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Count  int    `json:"count"`
}

// Percentiles of a distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return round3(float64(us) / 1000) }
	return Percentiles{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		Max: ms(h.Max()), Mean: round3(h.Mean() / 1000),
	}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// HotswapFigures are what hotswap did during a run, from its /metrics
// (counted for the workload's models only) and its events.
type HotswapFigures struct {
	Starts    int `json:"starts"`    // backend starts: swaps in
	Evictions int `json:"evictions"` // models that left memory, for room, TTL or unload
	Failures  int `json:"start_failures"`
	Crashes   int `json:"crashes"`
	// Time requests spent waiting before reaching a backend: for a model
	// to load, and in its queue behind other requests.
	WaitLoadingS float64              `json:"wait_loading_s"`
	WaitQueuedS  float64              `json:"wait_queued_s"`
	Models       []HotswapModelFigure `json:"models"`
	// Marks are the swaps and other events, from /admin/events; empty
	// when the event stream could not be read.
	Marks []Mark `json:"marks"`
}

// HotswapModelFigure is HotswapFigures for one model.
type HotswapModelFigure struct {
	Model        string  `json:"model"`
	Starts       int     `json:"starts"`
	Evictions    int     `json:"evictions"`
	WaitLoadingS float64 `json:"wait_loading_s"`
	WaitQueuedS  float64 `json:"wait_queued_s"`
}

// Timeline is the run over time, in buckets of BucketS seconds from its
// start: what the plots draw.
type Timeline struct {
	BucketS   float64         `json:"bucket_s"`
	Answered  []int           `json:"answered"` // per bucket, by end time
	Errors    []int           `json:"errors"`
	Models    []ModelTimeline `json:"models"`
	Truncated bool            `json:"truncated,omitempty"` // the run outgrew the points kept
}

// ModelTimeline is one model's mean and largest latency, in ms, of the
// requests due in each bucket (NaN-free: 0 where none was answered).
type ModelTimeline struct {
	Model       string    `json:"model"`
	MeanMs      []float64 `json:"mean_ms"`
	MaxMs       []float64 `json:"max_ms"`
	AnsweredRPS []float64 `json:"answered_per_s"`
}

// figures turns a tally into Figures over elapsed seconds.
func (t *tally) figures(elapsed float64) Figures {
	f := Figures{Sent: t.sent, Answered: t.answered, Errors: t.failed(), Cancelled: t.cancelled,
		OutputTokens: t.tokens}
	if n := f.Answered + f.Errors; n > 0 {
		f.ErrorRate = round3(float64(f.Errors) / float64(n))
	}
	for k, n := range t.errors {
		f.ErrorsBy = append(f.ErrorsBy, ErrorCount{Status: k.status, Code: k.code, Count: n})
	}
	slices.SortFunc(f.ErrorsBy, func(a, b ErrorCount) int {
		return cmp.Or(b.Count-a.Count, a.Status-b.Status, strings.Compare(a.Code, b.Code))
	})
	if elapsed > 0 {
		f.RPS = round3(float64(t.answered) / elapsed)
		f.OutputTokensPerS = round3(float64(t.tokens) / elapsed)
	}
	if t.answered > 0 {
		f.LatencyMs = percentiles(t.latency)
	}
	if t.ttft.TotalCount() > 0 {
		p := percentiles(t.ttft)
		f.TTFTMs = &p
	}
	if t.nGaps > 0 {
		f.InterTokenMs = round3(float64(t.gaps) / float64(t.nGaps) / float64(time.Millisecond))
	}
	switch {
	case t.byUsage > 0 && t.byChunks > 0:
		f.TokensCountedBy = "both"
	case t.byUsage > 0:
		f.TokensCountedBy = "usage"
	case t.byChunks > 0:
		f.TokensCountedBy = "chunks"
	}
	return f
}

// timeline buckets a target's points, about a hundred buckets whatever
// the run's length.
func timeline(r *recorder, models []model, elapsed float64) Timeline {
	width := niceBucket(elapsed / 100)
	n := int(math.Ceil(elapsed/width)) + 1
	tl := Timeline{BucketS: width, Answered: make([]int, n), Errors: make([]int, n), Truncated: r.truncated}
	sums := make([][]float64, len(models))
	counts := make([][]int, len(models))
	for i, m := range models {
		tl.Models = append(tl.Models, ModelTimeline{Model: m.Model, MeanMs: make([]float64, n), MaxMs: make([]float64, n), AnsweredRPS: make([]float64, n)})
		sums[i], counts[i] = make([]float64, n), make([]int, n)
	}
	bucket := func(s float64) int { return min(max(int(s/width), 0), n-1) }
	for _, p := range r.points {
		end := bucket(float64(p.at + p.latency))
		if !p.ok {
			tl.Errors[end]++
			continue
		}
		tl.Answered[end]++
		tl.Models[p.model].AnsweredRPS[end]++
		b := bucket(float64(p.at))
		ms := float64(p.latency) * 1000
		sums[p.model][b] += ms
		counts[p.model][b]++
		tl.Models[p.model].MaxMs[b] = max(tl.Models[p.model].MaxMs[b], round3(ms))
	}
	for i := range tl.Models {
		for b := range n {
			if counts[i][b] > 0 {
				tl.Models[i].MeanMs[b] = round3(sums[i][b] / float64(counts[i][b]))
			}
			tl.Models[i].AnsweredRPS[b] = round3(tl.Models[i].AnsweredRPS[b] / width)
		}
	}
	return tl
}

// niceBucket rounds a bucket width up to 1, 2 or 5 times a power of ten,
// and at least 10ms.
func niceBucket(s float64) float64 {
	if s <= 0.01 {
		return 0.01
	}
	p := math.Pow(10, math.Floor(math.Log10(s)))
	for _, m := range []float64{1, 2, 5, 10} {
		if s <= m*p*1.0000001 {
			return round3(m * p)
		}
	}
	return 10 * p
}

// errorRate is the worst of the targets' error rates.
func (r *Report) errorRate() float64 {
	worst := 0.0
	for _, t := range r.Targets {
		worst = max(worst, t.Total.ErrorRate)
	}
	return worst
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

// writeFile writes through a temporary file, so that an interrupted
// write never leaves half a report where a whole one was.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// TableRow is a row of the side-by-side table: a target's figures for all
// models together (All) or for one.
type TableRow struct {
	Target, Model string
	Name          string // what the target was asked for, when mapped
	All           bool
	Cells         []string // under Table's header, after target and model
}

// Table is the side-by-side table that the summary, the HTML report and
// BENCHMARKS.md show: its header, and a row per target and model.
func (r *Report) Table() (header []string, rows []TableRow) {
	stream := r.Workload.Stream
	header = []string{"target", "model", "sent", "answered", "errors", "error rate", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"}
	if stream {
		header = append(header, "ttft p50 ms", "ttft p99 ms", "gap ms", "tok/s")
	}
	header = append(header, "starts", "evictions", "load wait s", "queue wait s")
	for _, t := range r.Targets {
		all := append([]ModelFigures{{Model: "all", Figures: t.Total}}, t.Models...)
		for k, m := range all {
			cells := []string{strconv.Itoa(m.Sent), strconv.Itoa(m.Answered), strconv.Itoa(m.Errors), num(m.ErrorRate*100) + "%",
				num(m.RPS), num(m.LatencyMs.P50), num(m.LatencyMs.P90), num(m.LatencyMs.P99), num(m.LatencyMs.Max)}
			if stream {
				var ttft Percentiles
				if m.TTFTMs != nil {
					ttft = *m.TTFTMs
				}
				cells = append(cells, num(ttft.P50), num(ttft.P99), num(m.InterTokenMs), num(m.OutputTokensPerS))
			}
			cells = append(cells, hotswapCells(t.Hotswap, m.Model)...)
			rows = append(rows, TableRow{Target: t.Label, Model: m.Model, Name: m.Name, All: k == 0, Cells: cells})
		}
	}
	return header, rows
}

// WriteTable writes the summary: the side-by-side table, the errors by
// kind, and the notes.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header, rows := r.Table()
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, row := range rows {
		fmt.Fprintln(tw, row.Target+"\t"+row.Model+"\t"+strings.Join(row.Cells, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range r.Targets {
		for _, e := range t.Total.ErrorsBy {
			fmt.Fprintf(w, "%s: %d errors %d %s\n", t.Label, e.Count, e.Status, e.Code)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	return nil
}

func hotswapCells(h *HotswapFigures, model string) []string {
	if h == nil {
		return []string{"-", "-", "-", "-"}
	}
	if model == "all" {
		return []string{strconv.Itoa(h.Starts), strconv.Itoa(h.Evictions), num(h.WaitLoadingS), num(h.WaitQueuedS)}
	}
	for _, m := range h.Models {
		if m.Model == model {
			return []string{strconv.Itoa(m.Starts), strconv.Itoa(m.Evictions), num(m.WaitLoadingS), num(m.WaitQueuedS)}
		}
	}
	return []string{"-", "-", "-", "-"}
}

// Num prints a figure with three significant digits or so: enough to
// compare, not so many that columns swim.
func Num(f float64) string { return num(f) }

func num(f float64) string {
	switch {
	case f == 0:
		return "0"
	case math.Abs(f) >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case math.Abs(f) >= 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	case math.Abs(f) >= 1:
		return strconv.FormatFloat(f, 'f', 2, 64)
	}
	return strconv.FormatFloat(f, 'f', 3, 64)
}
