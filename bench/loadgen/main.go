// Package loadgen is hotswap's load generator, the program users run as
// `hotswap bench` (cmd/hotswap-bench): it sends an OpenAI workload to one
// or more targets, hotswap or not, and reports latency, time to first
// token, tokens a second and, for hotswap, the swaps the traffic caused,
// as a table, JSON and an HTML page with plots.
//
// It lives apart from the proxy, in a program of its own: its plotting
// (gonum/plot, with its fonts, LaTeX and PDF code) would otherwise be
// linked into hotswap and paged in by every hotswap process and its guard.
package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// Exit statuses of Main.
const (
	ExitOK          = 0
	ExitErrorRate   = 1   // a target's error rate is above -max-error-rate
	ExitUsage       = 2   // a bad flag, or a target that is down
	ExitInterrupted = 130 // Ctrl-C: the report of what ran is still written
)

// Main is `hotswap bench`: it parses args, runs until done or ctx ends,
// writes the summary to stdout, progress to stderr when that is a
// terminal, and the -json and -html reports, and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "hotswap bench:", err)
		return ExitUsage
	}
	var progress func(*Live)
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		progress = progressLine(stderr)
	}
	rep, err := Run(ctx, o, progress)
	if err != nil {
		fmt.Fprintln(stderr, "hotswap bench:", err)
		return ExitUsage
	}
	status := ExitOK
	if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintln(stderr, "hotswap bench:", err)
	}
	if o.JSON != "" {
		if err := rep.WriteJSON(o.JSON); err != nil {
			fmt.Fprintln(stderr, "hotswap bench: -json:", err)
			status = ExitUsage
		}
	}
	if o.HTML != "" {
		if err := rep.WriteHTML(o.HTML); err != nil {
			fmt.Fprintln(stderr, "hotswap bench: -html:", err)
			status = ExitUsage
		}
	}
	if rate := rep.errorRate(); rate > o.MaxErrorRate {
		fmt.Fprintf(stderr, "hotswap bench: error rate %.2f%% is above -max-error-rate %.2f%%\n", rate*100, o.MaxErrorRate*100)
		status = max(status, ExitErrorRate)
	}
	if rep.Interrupted {
		fmt.Fprintln(stderr, "hotswap bench: interrupted; the report is of what ran")
		return ExitInterrupted
	}
	return status
}

// progressLine draws one line, redrawn in place: which target, a bar,
// requests done, errors, elapsed and remaining time.
func progressLine(w io.Writer) func(*Live) {
	return func(l *Live) {
		done, failed := l.Done()
		elapsed := time.Since(l.Start)
		frac, left := 0.0, ""
		switch {
		case l.Requests > 0:
			frac = min(float64(done)/float64(l.Requests), 1)
			if done > 0 && done < l.Requests {
				left = ", " + (time.Duration(float64(elapsed)/frac) - elapsed).Round(time.Second).String() + " left"
			}
		case l.Duration > 0:
			frac = min(float64(elapsed)/float64(l.Duration), 1)
			left = ", " + max(l.Duration-elapsed, 0).Round(time.Second).String() + " left"
		}
		if l.Finished {
			frac, left = 1, ""
		}
		const width = 24
		fill := int(frac * width)
		bar := strings.Repeat("#", fill) + strings.Repeat(".", width-fill)
		fmt.Fprintf(w, "\r[%d/%d %s] [%s] %d done, %d errors, %s elapsed%s\x1b[K",
			l.Index+1, l.N, l.Target.Label, bar, done, failed, elapsed.Round(time.Second), left)
		if l.Finished {
			fmt.Fprintln(w)
		}
	}
}
