package loadgen

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlTestReport is two targets over the same streamed workload: hotswap,
// with figures and marks, and another without; the timelines have gaps.
func htmlTestReport() *Report {
	evil := "evil<b>bold</b>"
	fig := func(sent, answered, errs int, p50 float64) Figures {
		return Figures{Sent: sent, Answered: answered, Errors: errs, ErrorRate: round3(float64(errs) / float64(answered+errs)),
			RPS: float64(answered) / 10, LatencyMs: Percentiles{P50: p50, P90: 2 * p50, P99: 3 * p50, Max: 4 * p50, Mean: p50},
			TTFTMs: &Percentiles{P50: 12.5, P99: 40}, InterTokenMs: 8.25, OutputTokens: 1000, OutputTokensPerS: 100}
	}
	tl := func(gap bool) Timeline {
		t := Timeline{BucketS: 2, Answered: []int{3, 4, 0, 5, 6}, Errors: []int{0, 1, 0, 0, 0},
			Models: []ModelTimeline{
				{Model: "alpha", MeanMs: []float64{100, 120, 0, 90, 110}, MaxMs: []float64{150, 200, 0, 100, 130}, AnsweredRPS: []float64{1, 1, 0, 1.5, 2}},
				{Model: evil, MeanMs: []float64{0, 300, 0, 0, 250}, MaxMs: []float64{0, 400, 0, 0, 300}, AnsweredRPS: []float64{0, 1, 0, 1, 1}},
			}}
		if !gap {
			t.Models[0].MeanMs[2] = 95
		}
		return t
	}
	hot := TargetReport{Label: "hotswap", URL: "http://127.0.0.1:8080", ElapsedS: 9.5,
		Total: fig(20, 18, 1, 123),
		Models: []ModelFigures{
			{Model: "alpha", Figures: fig(12, 12, 0, 100)},
			{Model: evil, Figures: fig(8, 6, 1, 250)},
		},
		Hotswap: &HotswapFigures{Starts: 3, Evictions: 2, WaitLoadingS: 4.5, WaitQueuedS: 0.25,
			Models: []HotswapModelFigure{
				{Model: "alpha", Starts: 2, Evictions: 1, WaitLoadingS: 3, WaitQueuedS: 0.125},
				{Model: evil, Starts: 1, Evictions: 1, WaitLoadingS: 1.5, WaitQueuedS: 0.125},
			},
			Marks: []Mark{
				{At: 0.5, Type: "start", Model: "alpha"},
				{At: 3.5, Type: "evict", Model: "alpha", Reason: "room"},
				{At: 3.6, Type: "start", Model: evil},
				{At: 11, Type: "start", Model: "other"}, // past the elapsed time: widens the axis
			}},
		Timeline: tl(true)}
	hot.Total.ErrorsBy = []ErrorCount{{Status: 503, Code: "loading_timeout", Count: 1}}
	other := TargetReport{Label: "other <i>server</i>", URL: "http://127.0.0.1:9090", ElapsedS: 9.8,
		Total: fig(20, 20, 0, 80),
		Models: []ModelFigures{
			{Model: "alpha", Figures: fig(12, 12, 0, 70)},
			{Model: evil, Figures: fig(8, 8, 0, 90)},
		},
		Timeline: tl(false)}
	other.Timeline.Answered = []int{4, 4, 5, 5, 6}
	other.Timeline.Errors = []int{0, 0, 0, 0, 0}
	return &Report{
		Started: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Workload: WorkloadReport{Loop: "closed", Users: 4, Stream: true, MaxTokens: 64, Seed: 7, DurationS: 10,
			Models: []WorkloadModel{{Model: "alpha", Weight: 3, Kind: "chat"}, {Model: evil, Weight: 1, Kind: "chat"}}},
		Notes:   []string{"a note with <script>alert(1)</script>"},
		Targets: []TargetReport{hot, other},
	}
}

func TestWriteHTML(t *testing.T) {
	r := htmlTestReport()
	raw, doc := writeAndParse(t, r)

	// Nothing is fetched: no scripts, no links or sources off the page.
	if bytes.Contains(raw, []byte("<?xml")) {
		t.Error("an XML prolog was left in the page")
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//`)
	if m := external.Find(raw); m != nil {
		t.Errorf("external reference %q", m)
	}
	var walk func(*html.Node, func(*html.Node))
	walk = func(n *html.Node, f func(*html.Node)) {
		f(n)
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, f)
		}
	}
	var svgs, figures []*html.Node
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		switch n.Data {
		case "script", "link", "iframe", "img":
			t.Errorf("page has a <%s>", n.Data)
		case "b", "i":
			t.Errorf("a user string became a <%s> element", n.Data)
		case "svg":
			svgs = append(svgs, n)
		case "figure":
			figures = append(figures, n)
		}
		for _, a := range n.Attr {
			v := strings.ToLower(strings.TrimSpace(a.Val))
			if (a.Key == "src" || a.Key == "href") && (strings.HasPrefix(v, "http") || strings.HasPrefix(v, "//")) {
				t.Errorf("<%s %s=%q>", n.Data, a.Key, a.Val)
			}
		}
	})

	// One latency plot per target and the throughput plot, each in a
	// figure of class plot with a caption.
	if len(svgs) != len(r.Targets)+1 {
		t.Fatalf("%d <svg>, want %d", len(svgs), len(r.Targets)+1)
	}
	ids := map[string]*html.Node{}
	for _, s := range svgs {
		f := htmlInside(s, "figure")
		if f == nil || !htmlHasClass(f, "plot") {
			t.Fatalf("an <svg> is not inside a <figure class=plot>")
		}
		ids[htmlAttr(f, "id")] = f
		if c := htmlFind(f, "figcaption"); c == nil || !strings.Contains(htmlText(c), "over time") {
			t.Errorf("figure %s has no caption with its title", htmlAttr(f, "id"))
		}
	}
	for _, id := range []string{"latency-0", "latency-1", "throughput"} {
		if ids[id] == nil {
			t.Errorf("no figure %q; have %v", id, ids)
		}
	}
	if c := htmlFind(ids["latency-1"], "figcaption"); c == nil || !strings.Contains(htmlText(c), "Latency over time — other <i>server</i>") {
		t.Errorf("latency-1 caption: %q", htmlText(c))
	}

	// The swaps are dashed lines on the hotswap target's plot only.
	// dashed counts the plot's dashed paths, and those of them that are
	// vertical lines (a swap mark, or the legend's sample of one).
	vertical := regexp.MustCompile(`^M([-\d.e]+),[-\d.e]+L([-\d.e]+),[-\d.e]+$`)
	dashed := func(id string) (all, upright int) {
		walk(ids[id], func(n *html.Node) {
			if n.Type != html.ElementNode || n.Data != "path" || !strings.Contains(htmlAttr(n, "style"), "stroke-dasharray:") {
				return
			}
			all++
			if m := vertical.FindStringSubmatch(htmlAttr(n, "d")); m != nil && m[1] == m[2] {
				upright++
			}
		})
		return
	}
	// Three start marks, all within the x axis, and the legend's sample.
	if _, n := dashed("latency-0"); n != 4 {
		t.Errorf("the hotswap target's latency plot has %d dashed vertical lines, want 3 swaps and a legend sample", n)
	}
	if n, _ := dashed("latency-1"); n != 0 {
		t.Errorf("the other target's latency plot has %d dashed lines, though it has no marks", n)
	}
	if n, _ := dashed("throughput"); n == 0 {
		t.Error("the throughput plot has no dashed errors line")
	}
	// The model whose name has markup shows it as text in the legend.
	if !strings.Contains(htmlText(ids["latency-0"]), "evil<b>bold</b>") || !strings.Contains(htmlText(ids["latency-0"]), "swap (start)") {
		t.Errorf("latency-0 legend: %q", htmlText(ids["latency-0"]))
	}

	// The table: a row per target and (all, each model).
	table := htmlByID(doc, "summary")
	if table == nil {
		t.Fatal("no table#summary")
	}
	var head []string
	var rows [][]string
	walk(table, func(n *html.Node) {
		if n.Type != html.ElementNode || n.Data != "tr" {
			return
		}
		var cells []string
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && (c.DataAtom == atom.Td || c.DataAtom == atom.Th) {
				cells = append(cells, htmlText(c))
			}
		}
		if htmlInside(n, "thead") != nil {
			head = cells
		} else {
			rows = append(rows, cells)
		}
	})
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6: %q", len(rows), rows)
	}
	col := func(name string) int {
		for i, h := range head {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %q in %q", name, head)
		return -1
	}
	for _, c := range []string{"ttft p50 ms", "ttft p99 ms", "gap ms", "tok/s", "starts", "queue wait s"} {
		col(c)
	}
	for i, row := range rows {
		if len(row) != len(head) {
			t.Errorf("row %d has %d cells, the head %d", i, len(row), len(head))
		}
	}
	want := []struct {
		row  int
		col  string
		cell string
	}{
		{0, "target", "hotswap"}, {0, "model", "all"}, {0, "sent", "20"}, {0, "answered", "18"}, {0, "errors", "1"},
		{0, "error rate", "5.30%"}, {0, "p50 ms", "123"}, {0, "starts", "3"}, {0, "load wait s", "4.50"},
		{1, "model", "alpha"}, {1, "starts", "2"}, {1, "p99 ms", "300"},
		{2, "model", "evil<b>bold</b>"}, {2, "queue wait s", "0.125"}, {2, "ttft p50 ms", "12.5"}, {2, "gap ms", "8.25"},
		{3, "target", "other <i>server</i>"}, {3, "starts", "-"}, {3, "evictions", "-"}, {3, "error rate", "0%"},
		{5, "model", "evil<b>bold</b>"}, {5, "p50 ms", "90.0"}, {5, "tok/s", "100"},
	}
	for _, w := range want {
		if got := rows[w.row][col(w.col)]; got != w.cell {
			t.Errorf("row %d %s: %q, want %q", w.row, w.col, got, w.cell)
		}
	}

	// The header: the workload, the notes (escaped), the errors.
	if h := htmlText(htmlByID(doc, "workload")); !strings.Contains(h, "closed loop, 4 users") || !strings.Contains(h, "seed 7") {
		t.Errorf("workload: %q", h)
	}
	if n := htmlText(htmlByID(doc, "notes")); !strings.Contains(n, "<script>alert(1)</script>") {
		t.Errorf("notes: %q", n)
	}
	if e := htmlText(htmlByID(doc, "errors")); !strings.Contains(e, "hotswap: 1 × HTTP 503 loading_timeout") {
		t.Errorf("errors: %q", e)
	}
	if htmlByID(doc, "interrupted") != nil {
		t.Error("an interrupted warning on a whole run")
	}
}

func TestPlots(t *testing.T) {
	r := htmlTestReport()
	plots, err := r.Plots()
	if err != nil {
		t.Fatal(err)
	}
	if len(plots) != 3 {
		t.Errorf("%d plots, want 3", len(plots))
	}
	for _, name := range []string{"latency-0.svg", "latency-1.svg", "throughput.svg"} {
		b := bytes.TrimSpace(plots[name])
		if !bytes.HasPrefix(b, []byte("<svg")) || !bytes.HasSuffix(b, []byte("</svg>")) {
			t.Errorf("%s: %.60q...", name, b)
		}
		if !bytes.Contains(b, []byte(`xmlns="http://www.w3.org/2000/svg"`)) {
			t.Errorf("%s has no SVG namespace", name)
		}
		if bytes.Contains(b, []byte("@font-face")) || bytes.Contains(b, []byte("base64")) {
			t.Errorf("%s embeds a font", name)
		}
	}
	// The mark past the elapsed time widened the x axis to show it: a tick
	// at 10 s.
	if !bytes.Contains(plots["latency-0.svg"], []byte(">10</text>")) {
		t.Error("latency-0.svg has no x tick at 10 s")
	}
}

// An interrupted run may have no timeline at all: the page still writes.
func TestWriteHTMLEmpty(t *testing.T) {
	for name, r := range map[string]*Report{
		"zero": {},
		"interrupted at once": {
			Interrupted: true,
			Workload:    WorkloadReport{Loop: "open", Rate: 5, Models: []WorkloadModel{{Model: "a", Weight: 1, Kind: "embedding"}}},
			Targets: []TargetReport{
				{Label: "hotswap", Hotswap: &HotswapFigures{Marks: []Mark{{At: 0, Type: "start", Model: "a"}}}},
				{Label: "b", Timeline: Timeline{BucketS: 0.01, Answered: []int{0}, Errors: []int{0},
					Models: []ModelTimeline{{Model: "a", MeanMs: []float64{0}, MaxMs: []float64{0}, AnsweredRPS: []float64{0}}}}},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			raw, doc := writeAndParse(t, r)
			if n := strings.Count(string(raw), "<svg"); n != len(r.Targets)+1 {
				t.Errorf("%d <svg>, want %d", n, len(r.Targets)+1)
			}
			if r.Interrupted && htmlByID(doc, "interrupted") == nil {
				t.Error("no interrupted warning")
			}
		})
	}
}

// writeAndParse writes r's page to a file and parses it back.
func writeAndParse(t *testing.T, r *Report) ([]byte, *html.Node) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.html")
	if err := r.WriteHTML(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return raw, doc
}

func htmlInside(n *html.Node, tag string) *html.Node {
	for p := n.Parent; p != nil; p = p.Parent {
		if p.Type == html.ElementNode && p.Data == tag {
			return p
		}
	}
	return nil
}

func htmlFind(n *html.Node, tag string) *html.Node {
	if n == nil {
		return nil
	}
	if n.Type == html.ElementNode && n.Data == tag {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := htmlFind(c, tag); f != nil {
			return f
		}
	}
	return nil
}

func htmlByID(n *html.Node, id string) *html.Node {
	if n == nil {
		return nil
	}
	if n.Type == html.ElementNode && htmlAttr(n, "id") == id {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := htmlByID(c, id); f != nil {
			return f
		}
	}
	return nil
}

func htmlAttr(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func htmlHasClass(n *html.Node, class string) bool {
	return strings.Contains(" "+htmlAttr(n, "class")+" ", " "+class+" ")
}

// htmlText is n's text, its elements' included, spaces run together.
func htmlText(n *html.Node) string {
	var b strings.Builder
	var f func(*html.Node)
	f = func(n *html.Node) {
		if n == nil {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			f(c)
		}
	}
	f(n)
	return strings.Join(strings.Fields(b.String()), " ")
}
