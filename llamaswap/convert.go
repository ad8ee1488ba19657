package llamaswap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options say how to write the import.
type Options struct {
	// Source names the llama-swap file in the header comment.
	Source string
}

// Result is a hotswap configuration written from a llama-swap one.
type Result struct {
	// YAML is the configuration, with comments.
	YAML []byte
	// Models is how many models it serves.
	Models int
	// NotImported counts the settings written as "not imported" comments:
	// those hotswap has no place for, or does its own way.
	NotImported int
}

// NotImportedMark starts every comment that holds a llama-swap setting
// hotswap has no place for.
const NotImportedMark = "not imported:"

// The keys llama-swap reads at the top of its file.
var topKeys = []string{
	"healthCheckTimeout", "logRequests", "logLevel", "logTimeFormat", "logToStdout",
	"metricsMaxInMemory", "captureBuffer", "store", "ui", "performance", "globalTTL",
	"unloadTimeout", "models", "profiles", "selectors", "routing", "groups", "matrix",
	"macros", "startPort", "hooks", "sendLoadingState", "includeAliasesInList",
	"apiKeys", "peers", "upstream",
}

// The keys of one llama-swap model.
var modelKeys = []string{
	"cmd", "cmdStop", "proxy", "aliases", "env", "checkEndpoint", "ttl", "unloadTimeout",
	"unlisted", "useModelName", "name", "description", "concurrencyLimit", "filters",
	"macros", "metadata", "sendLoadingState", "timeouts", "compat", "capabilities",
	"healthCheckTimeout",
}

// converter reads one llama-swap file and writes hotswap's.
type converter struct {
	p       problems
	opt     Options
	top     map[string]entry
	order   []entry
	macros  []macro           // the file's
	renamed map[string]string // llama-swap macro name -> hotswap's
	models  []*model
	byName  map[string]*model // ids, aliases and setParamsByID names
	// what the file-wide settings say of every model
	globalTTL      int
	includeAliases bool
	notImported    int
}

// Convert reads a llama-swap configuration and writes the hotswap
// configuration that does the same, with a comment for each setting that
// hotswap has no place for or does its own way. It reports every problem
// in the file at once (an *Error), or a YAML syntax error.
func Convert(src []byte, opt Options) (*Result, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Problems: []Problem{{Msg: "the file is empty"}}}
		}
		return nil, fmt.Errorf("not a YAML file: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("not a YAML file: %w", err)
		}
		return nil, &Error{Problems: []Problem{{Line: extra.Line, Msg: "a second YAML document; llama-swap reads one"}}}
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if isNull(root) {
		return nil, &Error{Problems: []Problem{{Msg: "the file holds no settings"}}}
	}
	c := &converter{opt: opt, renamed: make(map[string]string), byName: make(map[string]*model)}
	c.top, c.order = c.p.fields(root, root.Line, "", topKeys...)
	out := c.convert()
	if err := c.p.err(); err != nil {
		return nil, err
	}
	return &Result{YAML: render(out), Models: len(c.models), NotImported: c.notImported}, nil
}

// convert reads the whole file, then writes hotswap's in the file's order.
func (c *converter) convert() []*out {
	if e, ok := c.top["macros"]; ok {
		c.macros = c.readMacros(e)
	}
	if v, ok := c.topInt("globalTTL"); ok {
		if v < 0 {
			c.p.addf(c.top["globalTTL"].line(), "globalTTL", "must be at least 0, got %d", v)
		}
		c.globalTTL = v
	}
	if v, ok := c.topBool("includeAliasesInList"); ok {
		c.includeAliases = v
	}
	c.readModels()
	c.readRouting()
	c.readPreload()

	doc := []*out{note(c.header()...)}
	for _, e := range c.order {
		doc = append(doc, c.topEntry(e)...)
	}
	return doc
}

func (c *converter) header() []string {
	src := "a llama-swap configuration"
	if c.opt.Source != "" {
		src = "llama-swap's " + c.opt.Source
	}
	return []string{
		"hotswap configuration imported from " + src + " by `hotswap import llama-swap`.",
		"",
		"Settings hotswap has no place for, or does its own way, are kept as comments",
		"starting \"" + NotImportedMark + "\" where they were: read them before serving.",
		"What hotswap does differently, besides:",
		"- llama-swap ran one model at a time unless its groups said otherwise; hotswap",
		"  keeps as many models loaded as memory allows, measures what each backend uses,",
		"  and evicts the least recently used idle ones when a model needs room. Each",
		"  model has a commented memory line: fill it in so that the first start is",
		"  planned too.",
		"- llama-swap sent a model up to 10 requests at once unless concurrencyLimit said",
		"  otherwise; hotswap sends it parallel requests (default 1) and queues the rest:",
		"  set parallel to the backend's slots (llama-server's -np).",
		"- llama-swap served requests in arrival order (hotswap's scheduling.policy: fifo);",
		"  hotswap's default, batch, keeps serving loaded models and swaps after max_wait.",
	}
}

// dropped writes a setting hotswap has no place for as a comment, with why
// and what hotswap does instead.
func (c *converter) dropped(e entry, why string) *out {
	c.notImported++
	return note(append(wrap(NotImportedMark+" "+why, maxWidth-2), yamlLines(e.key, e.v)...)...)
}

// noteOff writes a comment on something hotswap has no place for.
func (c *converter) noteOff(text string) *out {
	c.notImported++
	return note(wrap(NotImportedMark+" "+text, maxWidth-2)...)
}

// topEntry writes one top-level llama-swap setting.
func (c *converter) topEntry(e entry) []*out {
	switch e.key {
	case "healthCheckTimeout":
		v, ok := c.topInt(e.key)
		if !ok {
			return nil
		}
		why := fmt.Sprintf("healthCheckTimeout: %d. hotswap's is a stall timeout: a backend that keeps writing output is given more time", v)
		if v < 15 {
			why = fmt.Sprintf("healthCheckTimeout: %d, which llama-swap raised to its least, 15", v)
			v = 15
		}
		return []*out{{key: "health_timeout", value: seconds(v), line: why}}
	case "logLevel":
		s, ok := c.topString(e)
		if !ok {
			return nil
		}
		if !contains([]string{"debug", "info", "warn", "error"}, s) {
			return []*out{c.dropped(e, "hotswap's log_level is debug, info, warn or error")}
		}
		return []*out{{key: "log_level", value: s}}
	case "logRequests":
		return []*out{c.dropped(e, "hotswap logs every request at log_level info (method, path, model, status, bytes, time), and keeps 15 minutes of figures at GET /admin/history")}
	case "logTimeFormat":
		return []*out{c.dropped(e, "hotswap's log lines always start with the time, as 2006-01-02T15:04:05.000Z07:00")}
	case "logToStdout":
		return []*out{c.dropped(e, "hotswap writes its own log and every backend's output, tagged with the model, to stderr; GET /admin/events?logs=true streams both")}
	case "metricsMaxInMemory", "captureBuffer", "store":
		return []*out{c.dropped(e, "hotswap keeps no activity log nor request captures: 15 minutes of request figures are at GET /admin/history, Prometheus metrics at /metrics")}
	case "ui":
		c.p.fields(e.v, e.line(), e.path, "activity")
		return []*out{c.dropped(e, "hotswap's status page is /ui/; it shows no sessions")}
	case "performance":
		c.p.fields(e.v, e.line(), e.path, "disabled", "every")
		return []*out{c.dropped(e, "hotswap measures memory itself, per device and per backend: GET /admin/memory")}
	case "globalTTL":
		if c.globalTTL == 0 {
			return []*out{c.dropped(e, "hotswap's ttl is per model, 0 (never) unless set")}
		}
		return []*out{c.dropped(e, "hotswap has no file-wide ttl: every model without a ttl of its own has ttl: "+seconds(c.globalTTL))}
	case "unloadTimeout":
		v, ok := c.topInt(e.key)
		switch {
		case !ok:
			return nil
		case v < 0:
			c.p.addf(e.line(), e.path, "must be at least 0, got %d", v)
			return nil
		case v == 0:
			v = 10 // llama-swap's default
		}
		return []*out{{key: "stop_timeout", value: seconds(v), line: "unloadTimeout: SIGTERM, then SIGKILL after this"}}
	case "startPort":
		v, ok := c.topInt(e.key)
		if !ok {
			return nil
		}
		if v < 1 || v > 65535 {
			c.p.addf(e.line(), e.path, "must be a port, 1 to 65535, got %d", v)
			return nil
		}
		last := min(v+999, 65535)
		return []*out{{key: "ports", value: fmt.Sprintf("%d-%d", v, last),
			line: fmt.Sprintf("startPort: %d; hotswap takes ${PORT} from this range, checking each is free", v)}}
	case "sendLoadingState":
		on, ok := c.topBool(e.key)
		if !ok {
			return nil
		}
		return []*out{{key: "scheduling",
			kids: []*out{{key: "load_progress", value: loadProgress(on), line: "sendLoadingState: " + fmt.Sprint(on)}}}}
	case "includeAliasesInList":
		why := "hotswap lists each model once in /v1/models, its aliases in the entry's aliases field; variants (setParamsByID's names) have entries of their own"
		if c.includeAliases {
			why += ": they are listed"
		} else {
			why += ", here unlisted as llama-swap left them out"
		}
		return []*out{c.dropped(e, why)}
	case "macros":
		return c.macrosOut(e)
	case "apiKeys":
		return c.apiKeys(e)
	case "upstream":
		c.p.fields(e.v, e.line(), e.path, "ignorePaths")
		return []*out{c.dropped(e, "hotswap's /upstream/{model}/... starts the model for any path; it has no paths to ignore")}
	case "profiles":
		return []*out{c.dropped(e, "hotswap has no profiles of name pins; modes (POST /admin/modes/{name}) switch which models are loaded, and aliases name a model")}
	case "selectors":
		return []*out{c.dropped(e, "hotswap has no selectors: a name that always means one model is an alias (or a variant with params of its own)")}
	case "models":
		return c.modelsOut(e)
	case "hooks":
		return []*out{c.hooksOut(e)}
	case "routing", "groups", "matrix":
		return c.routingOut(e)
	case "peers":
		return []*out{c.dropped(e, "hotswap serves only the backends it starts: a remote server has no place (run a model whose cmd proxies to it, or point clients at it directly)")}
	}
	return nil
}

// seconds writes a number of seconds as a Go duration.
func seconds(n int) string {
	switch {
	case n == 0:
		return "0s"
	case n%3600 == 0:
		return strconv.Itoa(n/3600) + "h"
	case n%60 == 0:
		return strconv.Itoa(n/60) + "m"
	}
	return strconv.Itoa(n) + "s"
}

// topInt reads a top-level integer, macros and environment filled in.
func (c *converter) topInt(key string) (int, bool) {
	e, ok := c.top[key]
	if !ok {
		return 0, false
	}
	return c.intOf(e, c.fileScope())
}

func (c *converter) topBool(key string) (bool, bool) {
	e, ok := c.top[key]
	if !ok {
		return false, false
	}
	return c.boolOf(e, c.fileScope())
}

func (c *converter) topString(e entry) (string, bool) {
	v, ok := c.typed(e.v, c.fileScope(), e.line(), e.path)
	if !ok {
		return "", false
	}
	return fmt.Sprint(v), true
}

// typed reads a scalar as llama-swap's typed settings see it: the
// environment filled in from here (and the text typed afresh, as
// llama-swap reads the file after filling it in), then the macros.
func (c *converter) typed(n *yaml.Node, sc *scope, line int, path string) (any, bool) {
	if n.Kind != yaml.ScalarNode {
		c.p.addf(line, path, "must be a single value, got %s", describe(n))
		return nil, false
	}
	v := plainValue(n)
	s, isStr := v.(string)
	if !isStr || !strings.Contains(s, "${") {
		return v, true
	}
	s = envToHotswap(s)
	if strings.Contains(s, "${env:") {
		var ok bool
		if s, ok = c.readEnv(s, line, path); !ok {
			return nil, false
		}
		if n.Style == 0 {
			var x any
			if yaml.Unmarshal([]byte(s), &x) == nil && x != nil {
				v = x
				if i, isInt := x.(int); isInt {
					v = i
				}
			} else {
				v = s
			}
			if s2, still := v.(string); still {
				s = s2
			} else {
				return v, true
			}
		}
	}
	if !c.checkRefs(sc, s, line, path, false) {
		return nil, false
	}
	x := sc.expand(s)
	if str, isStr := x.(string); isStr && strings.Contains(str, "${env:") {
		// A macro that holds the environment: llama-swap typed it as
		// it read the file, once the variable was filled in.
		str, ok := c.readEnv(str, line, path)
		if !ok {
			return nil, false
		}
		var y any
		if yaml.Unmarshal([]byte(str), &y) == nil && y != nil {
			return y, true
		}
		return str, true
	}
	return x, true
}

func (c *converter) intOf(e entry, sc *scope) (int, bool) {
	v, ok := c.typed(e.v, sc, e.line(), e.path)
	if !ok {
		return 0, false
	}
	n, isInt := v.(int)
	if !isInt {
		c.p.addf(e.line(), e.path, "must be a whole number, got %s", quoteAny(v))
		return 0, false
	}
	return n, true
}

func (c *converter) boolOf(e entry, sc *scope) (bool, bool) {
	v, ok := c.typed(e.v, sc, e.line(), e.path)
	if !ok {
		return false, false
	}
	b, isBool := v.(bool)
	if !isBool {
		c.p.addf(e.line(), e.path, "must be true or false, got %s", quoteAny(v))
		return false, false
	}
	return b, true
}

func quoteAny(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// stringList reads a list of single values.
func (c *converter) stringList(e entry) ([]*yaml.Node, bool) {
	if e.v.Kind != yaml.SequenceNode {
		c.p.addf(e.line(), e.path, "must be a list, got %s", describe(e.v))
		return nil, false
	}
	var out []*yaml.Node
	ok := true
	for i, item := range e.v.Content {
		item = deref(item)
		if item.Kind != yaml.ScalarNode || isNull(item) {
			c.p.addf(item.Line, index(e.path, i), "must be a single value, got %s", describe(item))
			ok = false
			continue
		}
		out = append(out, item)
	}
	return out, ok
}

// staticScalar writes a value outside cmd, proxy and env for hotswap.
// Such values are read when the file is read, so ${MODEL_ID} is written
// as the model's id; and since hotswap draws a model's port at each start,
// a value that uses ${PORT} has no equivalent (port is then set).
// Macros are kept, and a value llama-swap types (a macro holding 0.7
// written alone) is written unquoted so that hotswap types it too.
func (c *converter) staticScalar(n *yaml.Node, sc *scope, line int, path string) (text string, port, ok bool) {
	if n.Tag != "!!str" {
		if isNull(n) {
			return "null", false, true
		}
		return n.Value, false, true
	}
	raw := envToHotswap(n.Value)
	if !strings.Contains(raw, "${") {
		return renderString(raw, false), false, true
	}
	if !c.checkRefs(sc, raw, line, path, false) {
		return "", false, false
	}
	reach := sc.reach(raw)
	if reach[macroPort] {
		return "", true, true
	}
	if reach[macroModelID] {
		switch v := sc.expand(raw).(type) {
		case string:
			return renderString(escapeExpanded(v), true), false, true
		default:
			return fmt.Sprint(v), false, true
		}
	}
	t := c.translate(raw)
	refs := lsRefRE.FindAllStringSubmatch(raw, -1)
	macros := 0
	for _, r := range refs {
		if lsNameRE.MatchString(r[1]) {
			macros++
		}
	}
	switch {
	case macros == 1 && len(refs) == 1 && refs[0][0] == raw:
		// Exactly one macro: llama-swap gives its value with its type.
		if _, isStr := sc.expand(raw).(string); !isStr {
			return renderPlain(t), false, true
		}
	case macros == 0 && n.Style == 0:
		// Only the environment, read before the file is typed, in both.
		return renderPlain(t), false, true
	}
	return renderString(t, true), false, true
}

// staticName is a name (an alias, a setParamsByID key) as llama-swap reads
// it: macros expanded, the environment left as ${env:NAME}.
func (c *converter) staticName(raw string, sc *scope, line int, path string) (string, bool) {
	raw = envToHotswap(raw)
	if !strings.Contains(raw, "${") {
		return raw, true
	}
	if !c.checkRefs(sc, raw, line, path, false) {
		return "", false
	}
	return escapeExpanded(fmt.Sprint(sc.expand(raw))), true
}

// valueOut writes a value of any shape (metadata, a parameter) under key,
// an entry with no equivalent (a ${PORT}) commented out. Map keys are
// taken as written, as both llama-swap and hotswap do.
func (c *converter) valueOut(key string, n *yaml.Node, sc *scope, line int, path string) *out {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		o := &out{key: key}
		for _, e := range c.p.entries(n, line, path) {
			o.kids = append(o.kids, c.valueOut(e.key, e.v, sc, e.line(), e.path))
		}
		if len(o.kids) == 0 {
			o.value = "{}"
		}
		return o
	case yaml.SequenceNode:
		o := &out{key: key, list: true}
		for i, item := range n.Content {
			o.kids = append(o.kids, c.valueOut("", item, sc, deref(item).Line, index(path, i)))
		}
		if len(o.kids) == 0 {
			o.value = "[]"
		}
		return o
	}
	text, port, ok := c.staticScalar(n, sc, line, path)
	if !ok {
		return &out{}
	}
	if port {
		c.notImported++
		v := renderString(n.Value, false)
		return &out{key: key, value: v, off: true,
			line: NotImportedMark + " llama-swap gave the model a fixed port when it read the file; hotswap draws one at each start, which only cmd, proxy and env can name"}
	}
	return &out{key: key, value: text}
}

// apiKeys writes apiKeys as api_keys.
func (c *converter) apiKeys(e entry) []*out {
	items, ok := c.stringList(e)
	if !ok {
		return nil
	}
	o := &out{key: "api_keys", list: true, line: "apiKeys; with keys, /admin, /metrics and /ui take them too unless admin_keys says otherwise"}
	sc := c.fileScope()
	for i, n := range items {
		path := index(e.path, i)
		text, _, ok := c.staticScalar(n, sc, n.Line, path)
		if !ok {
			continue
		}
		if n.Tag == "!!str" && n.Value == "" {
			c.p.addf(n.Line, path, "an API key must not be empty")
			continue
		}
		if !strings.Contains(n.Value, "${") && strings.Contains(n.Value, " ") {
			c.p.addf(n.Line, path, "an API key cannot contain spaces")
			continue
		}
		o.kids = append(o.kids, &out{value: text})
	}
	if len(o.kids) == 0 {
		o.value = "[]"
	}
	return []*out{o}
}

// macrosOut writes the file's macros.
func (c *converter) macrosOut(e entry) []*out {
	o := &out{key: "macros", line: "${name} anywhere in the file; ${env:NAME} is the environment"}
	for _, m := range c.macros {
		o.kids = append(o.kids, c.macroOut(m, ""))
	}
	if len(o.kids) == 0 {
		o.value = "{}"
	}
	return []*out{o}
}

// macroOut writes one macro under its hotswap name.
func (c *converter) macroOut(m macro, why string) *out {
	o := &out{key: c.hsName(m.name)}
	if why != "" {
		o.head = []string{why}
	}
	if o.key != m.name {
		o.line = "llama-swap's ${" + m.name + "}: hotswap's macro names start with a letter or _"
		if m.name == "MODEL" {
			o.line = "llama-swap's ${MODEL}: ${MODEL} is hotswap's placeholder for the model's id"
		}
	}
	switch v := m.value.(type) {
	case string:
		o.value = renderString(c.translate(v), false)
	default:
		o.value = fmt.Sprint(v)
	}
	return o
}

// loadProgress is hotswap's load_progress for llama-swap's
// sendLoadingState: both put what a waiting stream waits for into its
// reasoning, where chat windows show it.
func loadProgress(on bool) string {
	if on {
		return "reasoning"
	}
	return "off"
}
