package loadgen

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The plots' size: the SVGs scale to the page's width, this is their
// shape. The legend goes under the plot, in as many rows as it needs.
const (
	plotWidth  = 8 * vg.Inch
	plotHeight = 3.5 * vg.Inch
)

// plotPalette is Tableau's ten colours less its grey, which marks what is
// none of the workload's models.
var plotPalette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0xd6, 0x27, 0x28, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff},
	color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	color.RGBA{0xe3, 0x77, 0xc2, 0xff},
	color.RGBA{0xbc, 0xbd, 0x22, 0xff},
	color.RGBA{0x17, 0xbe, 0xcf, 0xff},
}

var (
	markGrey = color.RGBA{0x7f, 0x7f, 0x7f, 0xff}
	faultRed = color.RGBA{0xd6, 0x27, 0x28, 0xff}
)

func plotColor(i int) color.Color {
	if i < 0 {
		return markGrey
	}
	return plotPalette[i%len(plotPalette)]
}

// sansFont is Liberation Sans, whose metrics are Arial's and Helvetica's:
// the SVG names those as fallbacks (see svgFonts), so that text laid out
// with Liberation's metrics fits in a browser that has none of it.
var sansFont = font.Font{Typeface: "Liberation", Variant: "Sans"}

// Plots returns the report's plots as SVG documents by file name: the
// latency over time of each target, "latency-<i>.svg" for Targets[i], and
// the throughput of all targets, "throughput.svg". Fonts are not
// embedded: a viewer uses a local sans-serif font.
func (r *Report) Plots() (map[string][]byte, error) {
	plots := make(map[string][]byte, len(r.Targets)+1)
	for i := range r.Targets {
		b, err := r.latencyPlot(i)
		if err != nil {
			return nil, fmt.Errorf("latency plot of %s: %w", r.Targets[i].Label, err)
		}
		plots[latencyPlotName(i)] = b
	}
	b, err := r.throughputPlot()
	if err != nil {
		return nil, fmt.Errorf("throughput plot: %w", err)
	}
	plots["throughput.svg"] = b
	return plots, nil
}

func latencyPlotName(i int) string { return "latency-" + strconv.Itoa(i) + ".svg" }

func latencyTitle(label string) string { return "Latency over time — " + label }

const throughputTitle = "Throughput over time"

// modelColors gives each of the workload's models its colour, the same
// on every target and plot, by the workload's name and, where
// -model-map renamed it on a target, the name the target knows it by.
func (r *Report) modelColors(t *TargetReport) map[string]int {
	idx := make(map[string]int)
	for i, m := range r.Workload.Models {
		if _, ok := idx[m.Model]; !ok {
			idx[m.Model] = i
		}
	}
	for _, m := range t.Models {
		if i, ok := idx[m.Model]; ok && m.Name != "" {
			if _, taken := idx[m.Name]; !taken {
				idx[m.Name] = i
			}
		}
	}
	return idx
}

// latencyPlot draws Targets[i]'s mean latency per bucket, a line per
// model broken where a bucket had no answer, with its swaps marked.
func (r *Report) latencyPlot(i int) ([]byte, error) {
	t := &r.Targets[i]
	tl := t.Timeline
	colors := r.modelColors(t)
	p := newLinePlot(latencyTitle(t.Label), "seconds since the target's start", "mean latency (ms)")
	var legend []legendEntry

	xmax := max(t.ElapsedS, 0)
	ymax := 0.0
	extra := len(r.Workload.Models)
	for j, m := range tl.Models {
		ci, ok := colors[m.Model]
		if !ok {
			ci = extra
			extra++
		}
		s := &plotSeries{style: draw.LineStyle{Color: plotColor(ci), Width: vg.Points(1.5)}}
		for b, v := range m.MeanMs {
			x := float64(b) * tl.BucketS
			if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) || tl.BucketS <= 0 {
				s.add(x, math.NaN())
				continue
			}
			s.add(x, v)
			xmax = max(xmax, x)
			ymax = max(ymax, v)
		}
		p.Add(s)
		name := m.Model
		if name == "" {
			name = "model " + strconv.Itoa(j+1)
		}
		legend = append(legend, legendEntry{name, s})
	}

	var marks []Mark
	if t.Hotswap != nil {
		marks = t.Hotswap.Marks
	}
	starts := &plotVLines{}
	ticks := &plotBottomGlyphs{shape: draw.TriangleGlyph{}}
	faults := &plotBottomGlyphs{shape: draw.CrossGlyph{}}
	for _, m := range marks {
		at := m.At
		if math.IsNaN(at) || math.IsInf(at, 0) {
			continue
		}
		at = max(at, 0)
		clr := color.Color(markGrey)
		if ci, ok := colors[m.Model]; ok {
			clr = plotColor(ci)
		}
		switch m.Type {
		case "start":
			starts.add(at, clr)
		case "evict":
			ticks.add(at, clr)
		case "crash", "fail":
			faults.add(at, faultRed)
		default:
			continue
		}
		xmax = max(xmax, at)
	}
	if len(starts.xs) > 0 {
		p.Add(starts)
		legend = append(legend, legendEntry{"swap (start)", starts})
	}
	if len(ticks.xs) > 0 {
		p.Add(ticks)
		legend = append(legend, legendEntry{"eviction", ticks})
	}
	if len(faults.xs) > 0 {
		p.Add(faults)
		legend = append(legend, legendEntry{"crash / failed start", faults})
	}
	setPlotRanges(p, xmax, ymax)
	return renderPlot(p, legend)
}

// throughputPlot draws the answers a second of every target, and its
// errors a second, dashed, where it had any.
func (r *Report) throughputPlot() ([]byte, error) {
	p := newLinePlot(throughputTitle, "seconds since the target's start", "requests per second")
	var legend []legendEntry
	xmax, ymax := 0.0, 0.0
	for i, t := range r.Targets {
		tl := t.Timeline
		xmax = max(xmax, t.ElapsedS)
		if tl.BucketS <= 0 || len(tl.Answered) == 0 {
			continue
		}
		clr := plotColor(i)
		ok := &plotSeries{style: draw.LineStyle{Color: clr, Width: vg.Points(1.5)}}
		for b, n := range tl.Answered {
			ok.add(float64(b)*tl.BucketS, float64(n)/tl.BucketS)
		}
		bad := &plotSeries{style: draw.LineStyle{Color: clr, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(4), vg.Points(3)}}}
		anyErr := false
		for b, n := range tl.Errors {
			bad.add(float64(b)*tl.BucketS, float64(n)/tl.BucketS)
			anyErr = anyErr || n > 0
		}
		for _, s := range []*plotSeries{ok, bad} {
			if _, x1, _, y1 := s.DataRange(); !math.IsInf(x1, 0) {
				xmax, ymax = max(xmax, x1), max(ymax, y1)
			}
		}
		p.Add(ok)
		legend = append(legend, legendEntry{t.Label + " answered", ok})
		if anyErr {
			p.Add(bad)
			legend = append(legend, legendEntry{t.Label + " errors", bad})
		}
	}
	setPlotRanges(p, xmax, ymax)
	return renderPlot(p, legend)
}

func newLinePlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Title.TextStyle.Font = font.From(sansFont, 13)
	p.X.Label.TextStyle.Font = font.From(sansFont, 11)
	p.Y.Label.TextStyle.Font = font.From(sansFont, 11)
	p.X.Tick.Label.Font = font.From(sansFont, 10)
	p.Y.Tick.Label.Font = font.From(sansFont, 10)
	p.Title.Padding = vg.Points(6)
	g := plotter.NewGrid()
	g.Vertical.Color = color.Gray{0xe0}
	g.Horizontal.Color = color.Gray{0xe0}
	g.Vertical.Width, g.Horizontal.Width = vg.Points(0.5), vg.Points(0.5)
	p.Add(g)
	return p
}

// setPlotRanges puts the axes at [0, xmax] and [0, ymax] with some headroom,
// whatever the data, so that an empty plot draws too.
func setPlotRanges(p *plot.Plot, xmax, ymax float64) {
	if !(xmax > 0) || math.IsInf(xmax, 0) {
		xmax = 1
	}
	if !(ymax > 0) || math.IsInf(ymax, 0) {
		ymax = 1
	}
	p.X.Min, p.X.Max = 0, xmax
	p.Y.Min, p.Y.Max = 0, ymax*1.05
}

type legendEntry struct {
	name  string
	thumb plot.Thumbnailer
}

// maxLegendRunes shortens the longest names, so that one still fits a
// row.
const maxLegendRunes = 60

// renderPlot draws p with its legend under it, in columns, and returns the
// SVG document without its XML prolog.
func renderPlot(p *plot.Plot, entries []legendEntry) ([]byte, error) {
	sty := p.Y.Label.TextStyle
	sty.Font = font.From(sansFont, 10)
	sty.Rotation = 0
	sty.XAlign, sty.YAlign = draw.XLeft, draw.YBottom
	thumbW := vg.Points(20)
	pad := vg.Points(6)
	var colW, rowH vg.Length
	for i, e := range entries {
		if utf8.RuneCountInString(e.name) > maxLegendRunes {
			e.name = string([]rune(e.name)[:maxLegendRunes-1]) + "…"
			entries[i] = e
		}
		colW = max(colW, thumbW+sty.Width(" "+e.name)+4*pad)
		rowH = max(rowH, sty.Height(e.name)+vg.Points(3))
	}
	var legendH vg.Length
	cols, rows := 1, 0
	if len(entries) > 0 {
		cols = max(1, int((plotWidth-2*pad)/colW))
		rows = (len(entries) + cols - 1) / cols
		cols = (len(entries) + rows - 1) / rows // as few as the rows allow
		legendH = vg.Length(rows)*rowH + 2*pad
	}

	c := vgsvg.New(plotWidth, plotHeight+legendH)
	dc := draw.New(c)
	// White behind the legend too: the plot paints only its own part.
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	p.Draw(draw.Crop(dc, 0, 0, legendH, 0))

	for k := range cols {
		l := plot.NewLegend()
		l.TextStyle = sty
		l.ThumbnailWidth = thumbW
		l.Top, l.Left = true, true
		l.Padding = rowH - l.TextStyle.Height("Xg")
		if l.Padding < 0 {
			l.Padding = 0
		}
		for _, e := range entries[k*rows : min((k+1)*rows, len(entries))] {
			l.Add(e.name, e.thumb)
		}
		x0 := pad + vg.Length(k)*colW
		col := draw.Crop(dc, x0, 0, 0, -(plotHeight + pad))
		col.Max.X = min(col.Min.X+colW, dc.Max.X)
		l.Draw(col)
	}

	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	return svgFonts(stripProlog(buf.Bytes())), nil
}

// stripProlog drops what comes before <svg: the XML declaration and
// vgsvg's comment, which have no place inside an HTML page.
func stripProlog(b []byte) []byte {
	if i := bytes.Index(b, []byte("<svg")); i > 0 {
		b = b[i:]
	}
	return b
}

// svgFonts names fonts that a browser has for the Liberation it likely
// lacks.
func svgFonts(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("font-family:Liberation Sans;"),
		[]byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;"))
}

// plotSeries is a line through points, broken at NaN: a lone point between
// gaps is drawn as a dot.
type plotSeries struct {
	xs, ys []float64
	style  draw.LineStyle
}

func (s *plotSeries) add(x, y float64) { s.xs, s.ys = append(s.xs, x), append(s.ys, y) }

func (s *plotSeries) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	dot := draw.GlyphStyle{Color: s.style.Color, Radius: s.style.Width * 1.5, Shape: draw.CircleGlyph{}}
	var run []vg.Point
	flush := func() {
		switch len(run) {
		case 0:
		case 1:
			if c.Contains(run[0]) {
				c.DrawGlyph(dot, run[0])
			}
		default:
			c.StrokeLines(s.style, c.ClipLinesXY(run)...)
		}
		run = nil
	}
	for i := range s.xs {
		if math.IsNaN(s.ys[i]) || math.IsNaN(s.xs[i]) {
			flush()
			continue
		}
		run = append(run, vg.Point{X: trX(s.xs[i]), Y: trY(s.ys[i])})
	}
	flush()
}

func (s *plotSeries) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, ymin = math.Inf(1), math.Inf(1)
	xmax, ymax = math.Inf(-1), math.Inf(-1)
	for i := range s.xs {
		if math.IsNaN(s.ys[i]) || math.IsNaN(s.xs[i]) {
			continue
		}
		xmin, xmax = min(xmin, s.xs[i]), max(xmax, s.xs[i])
		ymin, ymax = min(ymin, s.ys[i]), max(ymax, s.ys[i])
	}
	return
}

func (s *plotSeries) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(s.style, c.Min.X, y, c.Max.X, y)
}

// plotVLines are dashed vertical lines across the plot: swaps.
type plotVLines struct {
	xs     []float64
	colors []color.Color
}

var swapDashes = []vg.Length{vg.Points(4), vg.Points(3)}

func (v *plotVLines) add(x float64, c color.Color) {
	v.xs, v.colors = append(v.xs, x), append(v.colors, c)
}

func (v *plotVLines) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for i, x := range v.xs {
		X := trX(x)
		if !c.ContainsX(X) {
			continue
		}
		c.StrokeLine2(draw.LineStyle{Color: v.colors[i], Width: vg.Points(0.9), Dashes: swapDashes}, X, c.Min.Y, X, c.Max.Y)
	}
}

func (v *plotVLines) Thumbnail(c *draw.Canvas) {
	x := c.Center().X
	c.StrokeLine2(draw.LineStyle{Color: markGrey, Width: vg.Points(0.9), Dashes: []vg.Length{vg.Points(3), vg.Points(2)}}, x, c.Min.Y, x, c.Max.Y)
}

// plotBottomGlyphs are small marks along the bottom of the plot: evictions,
// crashes.
type plotBottomGlyphs struct {
	shape  draw.GlyphDrawer
	xs     []float64
	colors []color.Color
}

func (g *plotBottomGlyphs) add(x float64, c color.Color) {
	g.xs, g.colors = append(g.xs, x), append(g.colors, c)
}

func (g *plotBottomGlyphs) style(c color.Color) draw.GlyphStyle {
	return draw.GlyphStyle{Color: c, Radius: vg.Points(3), Shape: g.shape}
}

func (g *plotBottomGlyphs) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for i, x := range g.xs {
		X := trX(x)
		if !c.ContainsX(X) {
			continue
		}
		c.DrawGlyphNoClip(g.style(g.colors[i]), vg.Point{X: X, Y: c.Min.Y + vg.Points(4)})
	}
}

func (g *plotBottomGlyphs) Thumbnail(c *draw.Canvas) {
	clr := color.Color(markGrey)
	if _, ok := g.shape.(draw.CrossGlyph); ok {
		clr = faultRed
	}
	c.DrawGlyphNoClip(g.style(clr), c.Center())
}

// WriteHTML writes the report as one HTML page that needs nothing else:
// the workload, the side-by-side table and the plots, inlined as SVG.
func (r *Report) WriteHTML(path string) error {
	b, err := r.HTML()
	if err != nil {
		return err
	}
	return writeFile(path, b)
}

// HTML is the page WriteHTML writes.
func (r *Report) HTML() ([]byte, error) {
	plots, err := r.Plots()
	if err != nil {
		return nil, err
	}
	pg := htmlPage{R: r, Stream: r.Workload.Stream}
	if !r.Started.IsZero() {
		pg.Started = r.Started.Format("2006-01-02 15:04:05 MST")
	}
	pg.Workload = workloadLines(&r.Workload)
	for _, m := range r.Workload.Models {
		kind := m.Kind
		if kind == "" {
			kind = kindChat
		}
		pg.Models = append(pg.Models, fmt.Sprintf("%s — weight %s, %s", m.Model, settingText(m.Weight), kind))
	}
	var rows []TableRow
	pg.Header, rows = r.Table()
	for k, row := range rows {
		pg.Rows = append(pg.Rows, htmlTableRow{TableRow: row, First: row.All && k > 0})
	}
	for i := range r.Targets {
		t := &r.Targets[i]
		pg.Targets = append(pg.Targets, htmlTarget{Label: t.Label, URL: t.URL})
		for _, e := range t.Total.ErrorsBy {
			pg.Errors = append(pg.Errors, htmlError{Label: t.Label, Count: e.Count, Status: statusText(e.Status), Code: e.Code})
		}
		if t.Total.Cancelled > 0 {
			pg.Errors = append(pg.Errors, htmlError{Label: t.Label, Count: t.Total.Cancelled, Status: "-", Code: "cancelled (in flight at the interrupt)"})
		}
		caption := "Mean latency of the requests due in each " + num(t.Timeline.BucketS) + " s, a line per model"
		if t.Hotswap != nil && len(t.Hotswap.Marks) > 0 {
			caption += "; dashed vertical lines are swaps (a backend starting), in the colour of the model swapped in"
		}
		if t.Timeline.Truncated {
			caption += "; the run outgrew the points kept, so the timeline stops early"
		}
		pg.Plots = append(pg.Plots, htmlPlot{
			ID: "latency-" + strconv.Itoa(i), Title: latencyTitle(t.Label), Caption: caption + ".",
			SVG: template.HTML(plots[latencyPlotName(i)]),
		})
	}
	pg.Plots = append(pg.Plots, htmlPlot{
		ID: "throughput", Title: throughputTitle,
		Caption: "Answers a second by when they ended, a line per target; errors a second dashed.",
		SVG:     template.HTML(plots["throughput.svg"]),
	})
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type htmlPage struct {
	R        *Report
	Started  string
	Stream   bool
	Workload []string
	Models   []string
	Targets  []htmlTarget
	Header   []string
	Rows     []htmlTableRow
	Errors   []htmlError
	Plots    []htmlPlot
}

type htmlTarget struct{ Label, URL string }

type htmlTableRow struct {
	TableRow
	First bool // the first row of a target after the first
}

type htmlError struct {
	Label  string
	Count  int
	Status string
	Code   string
}

type htmlPlot struct {
	ID, Title, Caption string
	SVG                template.HTML
}

func workloadLines(w *WorkloadReport) []string {
	var l []string
	switch w.Loop {
	case "open":
		l = append(l, "open loop at "+settingText(w.Rate)+" requests/s")
	case "":
	default:
		s := w.Loop + " loop, " + strconv.Itoa(w.Users) + " users"
		if w.ThinkMs > 0 {
			s += ", think " + num(w.ThinkMs) + " ms"
		}
		if w.Mix {
			s += ", mixed models"
		}
		l = append(l, s)
	}
	switch {
	case w.Requests > 0:
		l = append(l, strconv.Itoa(w.Requests)+" requests")
	case w.DurationS > 0:
		l = append(l, "for "+(time.Duration(w.DurationS*float64(time.Second))).String())
	}
	l = append(l, "stream "+strconv.FormatBool(w.Stream), "max_tokens "+strconv.Itoa(w.MaxTokens),
		"seed "+strconv.FormatUint(w.Seed, 10))
	return l
}

// settingText prints a setting as given: 3, 0.5, 2.5.
func settingText(f float64) string { return strconv.FormatFloat(f, 'g', 4, 64) }

func statusText(s int) string {
	if s == 0 {
		return "no status"
	}
	return "HTTP " + strconv.Itoa(s)
}

var pageTemplate = template.Must(template.New("page").Parse(strings.TrimSpace(`
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hotswap bench{{with .Started}} — {{.}}{{end}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0 auto;padding:1rem;max-width:72rem;color:#222;line-height:1.4}
h1{font-size:1.5rem;margin:.2rem 0}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
.meta{color:#555;margin:.2rem 0}
ul{margin:.3rem 0;padding-left:1.3rem}
.warn{background:#fff3cd;border:1px solid #e0b400;padding:.5rem .75rem;border-radius:4px}
.table-wrap{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;font-size:.85rem;white-space:nowrap}
th,td{padding:.25rem .5rem;border-bottom:1px solid #e3e3e3}
th{background:#f4f4f4;position:sticky;top:0;text-align:right}
th.l,td.l{text-align:left}
td{text-align:right;font-variant-numeric:tabular-nums}
tr.all td{font-weight:600}
tr.first td{border-top:2px solid #999}
.asked{color:#777;font-weight:normal}
figure.plot{margin:1.2rem 0;padding:0}
figure.plot svg{display:block;width:100%;height:auto;max-width:60rem}
figcaption{font-size:.85rem;color:#555;margin-top:.3rem}
figcaption strong{color:#222}
</style>
</head>
<body>
<header id="header">
<h1>hotswap bench</h1>
{{with .Started}}<p class="meta">started {{.}}</p>{{end}}
{{if .R.Interrupted}}<p class="warn" id="interrupted"><strong>Interrupted:</strong> the run was stopped before it finished; the figures are of what ran.</p>{{end}}
<p class="meta" id="workload">{{range $i, $l := .Workload}}{{if $i}} · {{end}}{{$l}}{{end}}</p>
{{with .Models}}<p class="meta">models:</p><ul id="models">{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Targets}}<p class="meta">targets:</p><ul id="targets">{{range .}}<li>{{.Label}}{{with .URL}} <span class="meta">({{.}})</span>{{end}}</li>{{end}}</ul>{{end}}
{{with .R.Notes}}<p class="meta">notes:</p><ul id="notes">{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
</header>
<main>
<h2>Side by side</h2>
<div class="table-wrap">
<table id="summary">
<thead><tr>{{range $i, $h := .Header}}<th{{if lt $i 2}} class="l"{{end}}>{{$h}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr class="{{if .All}}all{{else}}model{{end}}{{if .First}} first{{end}}"><td class="l">{{.Target}}</td><td class="l">{{.Model}}{{with .Name}} <span class="asked">(as {{.}})</span>{{end}}</td>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
</div>
{{with .Errors}}<h2>Errors</h2>
<ul id="errors">{{range .}}<li>{{.Label}}: {{.Count}} × {{.Status}}{{with .Code}} {{.}}{{end}}</li>{{end}}</ul>{{end}}
<h2>Over time</h2>
{{range .Plots}}<figure class="plot" id="{{.ID}}">
{{.SVG}}
<figcaption><strong>{{.Title}}</strong>. {{.Caption}}</figcaption>
</figure>
{{end}}</main>
</body>
</html>
`) + "\n"))
