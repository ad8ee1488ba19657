package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Options say what one run of `hotswap bench` sends, where, and for how
// long. Parse builds them from the command line.
type Options struct {
	Targets []Target
	Models  []Weighted // what the workload asks for, with their shares

	// Users > 0 is a closed loop: that many clients, each sending its next
	// request Think after its last answer. Rate > 0 is an open loop:
	// requests arrive as a Poisson process of that many a second, whether
	// or not earlier ones were answered.
	Users int
	Rate  float64
	Think time.Duration
	// Mix has every request draw its model by the weights; otherwise each
	// closed-loop user draws one model and keeps to it, as a person
	// talking to one model does.
	Mix bool

	// A run ends after Requests requests or Duration, whichever is set.
	Requests int
	Duration time.Duration

	Stream    bool
	MaxTokens int
	Prompt    string
	Seed      uint64

	// ModelMap renames models for one target (by label): for a backend
	// reached directly, which calls its model by another name.
	ModelMap map[string]map[string]string
	APIKey   string
	AdminKey string // for /metrics and /admin/events; default APIKey
	Timeout  time.Duration

	JSON, HTML   string
	MaxErrorRate float64
}

// Target is an endpoint the workload is sent to.
type Target struct {
	Label string // how the report names it
	URL   string // scheme://host:port, without a trailing slash
}

// Weighted is a model and its share of the workload.
type Weighted struct {
	Model  string
	Weight float64
}

// Most requests a run may send, and the longest it may last: the tool is
// for benchmarks, not for loading a machine without end.
const (
	maxRequests = 10_000_000
	maxDuration = 24 * time.Hour
	maxUsers    = 10_000
	maxRate     = 100_000
)

// Parse reads the command line of `hotswap bench`. Usage and errors are
// written to stderr; flag.ErrHelp is returned for -h.
func Parse(args []string, stderr io.Writer) (Options, error) {
	o := Options{Seed: 1}
	fs := flag.NewFlagSet("hotswap bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var targets, maps listFlag
	fs.Var(&targets, "target", "`[LABEL=]URL` of an OpenAI endpoint, such as http://127.0.0.1:8080 (repeat to compare targets)")
	models := fs.String("models", "", "`MODEL[:WEIGHT],...` the workload asks for (weights default to 1)")
	fs.IntVar(&o.Users, "users", 0, "closed loop: this many concurrent users (default 8 unless -rate is given)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: requests per second, arriving at random (Poisson)")
	fs.DurationVar(&o.Think, "think", 0, "closed loop: a user's pause between an answer and its next request")
	fs.BoolVar(&o.Mix, "mix", false, "every request draws its model by the weights (default: each user keeps to one model)")
	fs.IntVar(&o.Requests, "requests", 0, "stop after this many requests per target")
	fs.DurationVar(&o.Duration, "duration", 0, "stop sending after this long per target (default 30s unless -requests is given)")
	fs.BoolVar(&o.Stream, "stream", false, "stream chat completions (time to first token, inter-token gaps)")
	fs.IntVar(&o.MaxTokens, "max-tokens", 64, "max_tokens of each chat completion")
	fs.StringVar(&o.Prompt, "prompt", "Write a haiku about swapping models.", "the user message of each chat completion, and the input of embeddings")
	promptFile := fs.String("prompt-file", "", "read the prompt from this file instead")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the workload: the same seed sends the same models in the same order")
	fs.Var(&maps, "model-map", "`LABEL:MODEL=NAME,...` calls MODEL by NAME on the target LABEL (repeatable)")
	fs.StringVar(&o.APIKey, "api-key", os.Getenv("HOTSWAP_API_KEY"), "Bearer key for the API (default $HOTSWAP_API_KEY)")
	fs.StringVar(&o.AdminKey, "admin-key", os.Getenv("HOTSWAP_ADMIN_KEY"), "Bearer key for hotswap's /metrics and /admin/events (default $HOTSWAP_ADMIN_KEY, else -api-key)")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "longest one request may take")
	fs.StringVar(&o.JSON, "json", "", "write every figure to this JSON file")
	fs.StringVar(&o.HTML, "html", "", "write a self-contained HTML report with plots to this file")
	fs.Float64Var(&o.MaxErrorRate, "max-error-rate", 1, "exit with status 1 when a target's error rate is above this (0.01 is 1%)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: hotswap bench -target URL [-target URL ...] -models MODEL[:WEIGHT],... [-users N | -rate R] [-requests N | -duration D] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.AdminKey == "" {
		o.AdminKey = o.APIKey
	}
	var err error
	if o.Targets, err = parseTargets(targets); err != nil {
		return o, err
	}
	if o.Models, err = parseModels(*models); err != nil {
		return o, err
	}
	if o.ModelMap, err = parseModelMap(maps, o.Targets); err != nil {
		return o, err
	}
	if *promptFile != "" {
		b, err := os.ReadFile(*promptFile)
		if err != nil {
			return o, fmt.Errorf("-prompt-file: %w", err)
		}
		o.Prompt = string(b)
	}
	return o, o.check()
}

// check fills the defaults that depend on other flags and refuses
// contradictions.
func (o *Options) check() error {
	switch {
	case o.Users < 0 || o.Users > maxUsers:
		return fmt.Errorf("-users must be between 1 and %d", maxUsers)
	case o.Rate < 0 || o.Rate > maxRate:
		return fmt.Errorf("-rate must be between 0 and %d requests a second", maxRate)
	case o.Users > 0 && o.Rate > 0:
		return errors.New("-users (closed loop) and -rate (open loop) exclude each other")
	case o.Rate > 0 && o.Think > 0:
		return errors.New("-think is for the closed loop (-users), not -rate")
	case o.Rate > 0 && o.Mix:
		return errors.New("-mix is for the closed loop: with -rate every request draws its model already")
	case o.Think < 0:
		return errors.New("-think must not be negative")
	case o.Requests < 0 || o.Requests > maxRequests:
		return fmt.Errorf("-requests must be between 1 and %d", maxRequests)
	case o.Duration < 0 || o.Duration > maxDuration:
		return fmt.Errorf("-duration must be between 0 and %v", maxDuration)
	case o.Requests > 0 && o.Duration > 0:
		return errors.New("give -requests or -duration, not both")
	case o.MaxTokens < 1:
		return errors.New("-max-tokens must be at least 1")
	case o.Timeout <= 0:
		return errors.New("-timeout must be positive")
	case o.MaxErrorRate < 0 || o.MaxErrorRate > 1:
		return errors.New("-max-error-rate is a fraction between 0 and 1")
	case strings.TrimSpace(o.Prompt) == "":
		return errors.New("the prompt is empty")
	}
	if o.Users == 0 && o.Rate == 0 {
		o.Users = 8
	}
	if o.Requests == 0 && o.Duration == 0 {
		o.Duration = 30 * time.Second
	}
	return nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseTargets(args []string) ([]Target, error) {
	if len(args) == 0 {
		return nil, errors.New("give at least one -target, such as -target http://127.0.0.1:8080")
	}
	seen := map[string]bool{}
	out := make([]Target, 0, len(args))
	for _, a := range args {
		label, raw := "", a
		// A label is what comes before '=' when that is not inside the URL.
		if i := strings.Index(a, "="); i > 0 && !strings.Contains(a[:i], "/") {
			label, raw = a[:i], a[i+1:]
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("-target %q: want [LABEL=]http://HOST:PORT", a)
		}
		if u.Path != "" && u.Path != "/" && u.Path != "/v1" && u.Path != "/v1/" {
			return nil, fmt.Errorf("-target %q: give the server's address, without a path (requests go to /v1/...)", a)
		}
		if u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("-target %q: no query or user in the URL (use -api-key)", a)
		}
		if label == "" {
			label = u.Host
		}
		if seen[label] {
			return nil, fmt.Errorf("-target %q: two targets are labelled %q; give each a LABEL=", a, label)
		}
		seen[label] = true
		out = append(out, Target{Label: label, URL: u.Scheme + "://" + u.Host})
	}
	return out, nil
}

func parseModels(s string) ([]Weighted, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("give the models to ask for, such as -models chat-small,chat-large:0.2")
	}
	var out []Weighted
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		name, weight := part, 1.0
		// The weight follows the last colon, so that names with colons
		// (ollama's llama3:8b) can be given a weight too.
		if i := strings.LastIndex(part, ":"); i >= 0 {
			if w, err := strconv.ParseFloat(part[i+1:], 64); err == nil {
				name, weight = part[:i], w
			}
		}
		switch {
		case name == "":
			return nil, fmt.Errorf("-models %q: an empty model name", s)
		case weight <= 0 || weight != weight || weight > 1e9:
			return nil, fmt.Errorf("-models: the weight of %q must be a positive number", name)
		case seen[name]:
			return nil, fmt.Errorf("-models: %q is given twice", name)
		}
		seen[name] = true
		out = append(out, Weighted{Model: name, Weight: weight})
	}
	return out, nil
}

func parseModelMap(args []string, targets []Target) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, a := range args {
		// Labels may hold colons (host:port), so the label is the one
		// the argument begins with.
		label, pairs := "", ""
		for _, t := range targets {
			if rest, ok := strings.CutPrefix(a, t.Label+":"); ok && len(t.Label) > len(label) {
				label, pairs = t.Label, rest
			}
		}
		if label == "" {
			return nil, fmt.Errorf("-model-map %q: want LABEL:MODEL=NAME,... where LABEL is a -target's label", a)
		}
		if out[label] == nil {
			out[label] = map[string]string{}
		}
		for _, p := range strings.Split(pairs, ",") {
			from, to, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || from == "" || to == "" {
				return nil, fmt.Errorf("-model-map %q: want LABEL:MODEL=NAME,...", a)
			}
			out[label][from] = to
		}
	}
	return out, nil
}

// name is what target calls model.
func (o *Options) name(target, model string) string {
	if n, ok := o.ModelMap[target][model]; ok {
		return n
	}
	return model
}
