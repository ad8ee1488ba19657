package llamaswap

import (
	"fmt"
	"sort"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/hotswap/hotswap/config"
)

// model is one llama-swap model, as read.
type model struct {
	id    string
	e     entry
	f     map[string]entry
	order []entry
	own   []macro
	sc    *scope
	// aliases are its own aliases, expanded, less those that name a
	// variant; aliasOff are those hotswap cannot take, with why.
	aliases  []string
	aliasOff map[string]string
	// byID are the setParamsByID entries by expanded name, in file order;
	// self is the one for the model's own id.
	byID []byIDEntry
	self *byIDEntry
	// from elsewhere in the file
	routing    string // what llama-swap's groups or matrix said of it
	persistent string // the persistent group it is in, if any
	preload    bool
	unlisted   bool
}

type byIDEntry struct {
	name string
	e    entry
}

// validName is hotswap's rule for a model id or alias.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// readModels reads every model and the names they answer to.
func (c *converter) readModels() {
	e, ok := c.top["models"]
	if !ok {
		c.p.addf(0, "models", "no models: hotswap needs at least one")
		return
	}
	names := macroNames(c.macros)
	for _, me := range c.p.entries(e.v, e.line(), e.path) {
		if !validName(me.key) {
			c.p.addf(me.line(), e.path, "model id %q: hotswap's names hold no spaces or control characters; rename it", me.key)
			continue
		}
		if isNull(me.v) {
			c.p.addf(me.line(), me.path, "no settings: a model needs a cmd")
			continue
		}
		m := &model{id: me.key, e: me, aliasOff: map[string]string{}}
		m.f, m.order = c.p.fields(me.v, me.line(), me.path, modelKeys...)
		if e, ok := m.f["macros"]; ok {
			m.own = c.readMacros(e)
			names = append(names, macroNames(m.own)...)
		}
		m.sc = c.modelScope(m.id, m.own)
		if e, ok := m.f["unlisted"]; ok {
			m.unlisted, _ = c.boolOf(e, m.sc)
		}
		c.models = append(c.models, m)
		c.byName[m.id] = m
	}
	if len(c.models) == 0 && len(c.p.list) == 0 {
		c.p.addf(e.line(), e.path, "no models: hotswap needs at least one")
	}
	c.planNames(names)
	for _, m := range c.models {
		c.readPort(m)
	}
	for _, m := range c.models {
		c.readAliases(m)
	}
	for _, m := range c.models {
		c.readByID(m)
	}
}

func macroNames(list []macro) []string {
	out := make([]string, len(list))
	for i, m := range list {
		out[i] = m.name
	}
	return out
}

// cmdText returns a cmd as llama-swap runs it: lines that are comments
// dropped, a trailing backslash joining a line to the next.
func cmdText(raw string) (lines, comments []string) {
	for _, l := range strings.Split(raw, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "#"):
			comments = append(comments, strings.TrimSpace(strings.TrimPrefix(t, "#")))
		case t == "":
		case strings.HasSuffix(t, "\\"):
			if t = strings.TrimSpace(strings.TrimSuffix(t, "\\")); t != "" {
				lines = append(lines, t)
			}
		default:
			lines = append(lines, t)
		}
	}
	return lines, comments
}

// readPort learns whether a model's cmd uses ${PORT}: only then does
// llama-swap give it one.
func (c *converter) readPort(m *model) {
	e, ok := m.f["cmd"]
	if !ok {
		c.p.addf(m.e.line(), m.e.path, "missing cmd (the command that starts the backend)")
		return
	}
	if e.v.Kind != yaml.ScalarNode {
		c.p.addf(e.line(), e.path, "must be a string, got %s", describe(e.v))
		return
	}
	lines, _ := cmdText(e.v.Value)
	m.sc.port = m.sc.reach(envToHotswap(strings.Join(lines, "\n")))[macroPort]
	if _, ok := m.f["proxy"]; !ok && !m.sc.port {
		c.p.addf(e.line(), e.path, "never uses ${PORT}, and the model sets no proxy: llama-swap refuses this too "+
			"(its default proxy, http://localhost:${PORT}, needs ${PORT} in cmd); pass ${PORT} to the backend, or set proxy")
	}
}

// readAliases reads a model's aliases, checking that each names one model.
func (c *converter) readAliases(m *model) {
	e, ok := m.f["aliases"]
	if !ok {
		return
	}
	items, _ := c.stringList(e)
	for i, n := range items {
		path := index(e.path, i)
		a, ok := c.staticName(n.Value, m.sc, n.Line, path)
		if !ok {
			continue
		}
		a = strings.TrimSpace(a)
		switch other := c.byName[a]; {
		case other == m && a == m.id:
			m.aliasOff[a] = "the model's own id"
		case other == m:
			c.p.addf(n.Line, path, "alias %q is listed twice", a)
		case other != nil && a == other.id:
			c.p.addf(n.Line, path, "alias %q is the id of model %q", a, other.id)
		case other != nil:
			c.p.addf(n.Line, path, "alias %q is already used by model %q", a, other.id)
		case !validName(a):
			m.aliasOff[a] = "hotswap's names hold no spaces or control characters"
		default:
			c.byName[a] = m
			m.aliases = append(m.aliases, a)
		}
	}
}

// readByID reads filters.setParamsByID's names: each but the model's own
// id names a variant.
func (c *converter) readByID(m *model) {
	fe, ok := m.f["filters"]
	if !ok {
		return
	}
	f, _ := c.p.fields(fe.v, fe.line(), fe.path, "stripParams", "strip_params", "setParams", "setParamsByID")
	e, ok := f["setParamsByID"]
	if !ok {
		return
	}
	seen := map[string]int{}
	for _, be := range c.p.entries(e.v, e.line(), e.path) {
		name, ok := c.staticName(be.key, m.sc, be.line(), be.path)
		if !ok {
			continue
		}
		if strings.Contains(name, "${") {
			c.p.addf(be.line(), be.path, "a name from the environment or ${PORT} cannot name a variant")
			continue
		}
		if line, dup := seen[name]; dup {
			c.p.addf(be.line(), be.path, "%q is written twice (line %d)", name, line)
			continue
		}
		seen[name] = be.line()
		if be.v.Kind != yaml.MappingNode {
			c.p.addf(be.line(), be.path, "must be a mapping of parameters, got %s", describe(be.v))
			continue
		}
		b := byIDEntry{name: name, e: be}
		if name == m.id {
			m.self = &b
			continue
		}
		switch other := c.byName[name]; {
		case other == m:
			// One of its aliases: the name becomes a variant.
			m.aliases = remove(m.aliases, name)
		case other != nil && name == other.id:
			c.p.addf(be.line(), be.path, "%q is the id of model %q", name, other.id)
			continue
		case other != nil:
			c.p.addf(be.line(), be.path, "%q is already an alias of model %q", name, other.id)
			continue
		case !validName(name):
			c.p.addf(be.line(), be.path, "%q: hotswap's names hold no spaces or control characters", name)
			continue
		}
		c.byName[name] = m
		m.byID = append(m.byID, b)
	}
}

func remove(list []string, s string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// modelsOut writes the models in the file's order.
func (c *converter) modelsOut(e entry) []*out {
	o := &out{key: "models"}
	for _, m := range c.models {
		o.kids = append(o.kids, c.modelOut(m))
	}
	return []*out{o}
}

// modelOut writes one model: its settings in the file's order, then what
// other parts of the file said of it.
func (c *converter) modelOut(m *model) *out {
	o := &out{key: m.id}
	if copies := c.copies(m); len(m.own) > 0 || len(copies) > 0 {
		mo := &out{key: "macros"}
		for _, d := range m.own {
			mo.kids = append(mo.kids, c.macroOut(d, ""))
		}
		for _, g := range copies {
			mo.kids = append(mo.kids, c.macroOut(g, "copied from the file's macros: llama-swap expands it with this model's own macros, hotswap with the file's"))
			mo.kids[len(mo.kids)-1].head = wrap(mo.kids[len(mo.kids)-1].head[0], maxWidth-8)
		}
		o.kids = append(o.kids, mo)
	}
	ttlSet := false
	for _, e := range m.order {
		switch e.key {
		case "macros":
			// written first
		case "cmd":
			o.kids = append(o.kids, c.cmdOut(m, e))
		case "cmdStop":
			o.kids = append(o.kids, c.dropped(e, "hotswap stops a backend with SIGTERM to its process group, then SIGKILL after stop_timeout; a container run in the foreground (docker run without -d) is passed the SIGTERM"))
		case "proxy":
			o.kids = append(o.kids, c.proxyOut(m, e)...)
		case "aliases":
			o.kids = append(o.kids, c.aliasesOut(m, e)...)
		case "env":
			o.kids = append(o.kids, c.envOut(m, e)...)
		case "checkEndpoint":
			o.kids = append(o.kids, c.healthOut(m, e)...)
		case "ttl":
			ttlSet = true
			o.kids = append(o.kids, c.ttlOut(m, e)...)
		case "unloadTimeout":
			if v, ok := c.intOf(e, m.sc); ok {
				switch {
				case v < 0:
					c.p.addf(e.line(), e.path, "must be at least 0, got %d", v)
				case v > 0:
					o.kids = append(o.kids, &out{key: "stop_timeout", value: seconds(v), line: "unloadTimeout"})
				}
			}
		case "unlisted":
			if v, ok := c.boolOf(e, m.sc); ok {
				o.kids = append(o.kids, &out{key: "unlisted", value: fmt.Sprint(v)})
			}
		case "useModelName":
			o.kids = append(o.kids, c.upstreamOut(m, e)...)
		case "name", "description":
			o.kids = append(o.kids, c.infoOut(m, e)...)
		case "concurrencyLimit":
			if v, ok := c.intOf(e, m.sc); ok {
				if v > 0 {
					o.kids = append(o.kids, &out{key: "parallel", value: fmt.Sprint(v),
						line: "concurrencyLimit; hotswap queues what is over it (scheduling.queue_size) rather than answering 429"})
				} else {
					o.kids = append(o.kids, c.dropped(e, "llama-swap's default, 10 at once; hotswap's parallel is 1 unless set"))
				}
			}
		case "filters":
			o.kids = append(o.kids, c.filtersOut(m, e)...)
		case "metadata":
			if e.v.Kind != yaml.MappingNode {
				c.p.addf(e.line(), e.path, "must be a mapping, got %s", describe(e.v))
				continue
			}
			o.kids = append(o.kids, c.valueOut("metadata", e.v, m.sc, e.line(), e.path))
		case "sendLoadingState":
			if on, ok := c.boolOf(e, m.sc); ok {
				o.kids = append(o.kids, &out{key: "load_progress", value: loadProgress(on), line: "sendLoadingState: " + fmt.Sprint(on)})
			}
		case "timeouts":
			c.p.fields(e.v, e.line(), e.path, "connect", "keepalive", "responseHeader", "tlsHandshake", "expectContinue", "idleConn")
			o.kids = append(o.kids, c.dropped(e, "hotswap keeps idle connections to a backend for upstream_keepalive (3s, below llama-server's 5s); a backend's start is bounded by health_timeout, a silent client by server.stall_timeout"))
		case "compat":
			c.p.fields(e.v, e.line(), e.path, "ignoreWebsockets")
			o.kids = append(o.kids, c.dropped(e, "hotswap does not forward WebSocket upgrades"))
		case "capabilities":
			o.kids = append(o.kids, c.capabilitiesOut(m, e)...)
		case "healthCheckTimeout":
			o.kids = append(o.kids, c.dropped(e, "llama-swap gives every model the file's healthCheckTimeout, whatever this says; hotswap would honour health_timeout here"))
		}
	}
	if !ttlSet && c.globalTTL > 0 {
		o.kids = append(o.kids, &out{key: "ttl", value: seconds(c.globalTTL), line: "globalTTL"})
	}
	o.kids = append(o.kids, c.placementOut(m)...)
	if m.preload {
		o.kids = append(o.kids, &out{key: "preload", value: "true", line: "hooks.on_startup.preload"})
	}
	return o
}

// copies returns the file's macros that a model must have copies of: those
// it uses that use, directly or not, a macro the model defines again.
// llama-swap expands them with the model's definition, hotswap in the
// scope that defines them.
func (c *converter) copies(m *model) []macro {
	if len(m.own) == 0 {
		return nil
	}
	used := make(map[string]bool)
	var walk func(n *yaml.Node, isKey bool)
	walk = func(n *yaml.Node, isKey bool) {
		n = deref(n)
		if n == nil {
			return
		}
		if n.Kind == yaml.ScalarNode {
			for name := range m.sc.reach(n.Value) {
				used[name] = true
			}
			return
		}
		for _, k := range n.Content {
			walk(k, false)
		}
	}
	for _, e := range m.order {
		if e.key != "macros" {
			walk(e.v, false)
		}
	}
	for _, d := range m.own {
		if s, ok := d.value.(string); ok {
			for name := range m.sc.reach(s) {
				used[name] = true
			}
		}
	}
	var out []macro
	for _, g := range c.macros {
		s, isStr := g.value.(string)
		if !used[g.name] || m.sc.own[g.name] || !isStr {
			continue
		}
		for name := range m.sc.reach(s) {
			if m.sc.own[name] {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// cmdOut writes a cmd: one line, or a block of lines; the comments it
// held are written above it.
func (c *converter) cmdOut(m *model, e entry) *out {
	if e.v.Kind != yaml.ScalarNode {
		return &out{}
	}
	lines, comments := cmdText(e.v.Value)
	if len(lines) == 0 {
		c.p.addf(e.line(), e.path, "the command is empty")
		return &out{}
	}
	joined := envToHotswap(strings.Join(lines, "\n"))
	if !c.checkRefs(m.sc, joined, e.line(), e.path, false) {
		return &out{}
	}
	o := &out{key: "cmd"}
	for _, cm := range comments {
		o.head = append(o.head, "(in llama-swap's cmd) "+cm)
	}
	if x, ok := m.sc.expand(joined).(string); ok && strings.Contains(x, "${env:") {
		// llama-swap put the variable's text in the line before
		// splitting it; hotswap splits first.
		o.head = append(o.head, "each ${env:NAME} is one argument here, whatever the variable holds")
	}
	for i, l := range lines {
		lines[i] = c.translate(l)
	}
	if len(lines) == 1 {
		o.value = renderString(lines[0], false)
	} else {
		o.block = lines
	}
	return o
}

// proxyOut writes the model's proxy. llama-swap refuses a proxy that uses
// ${PORT} when the cmd does not.
func (c *converter) proxyOut(m *model, e entry) []*out {
	raw, ok := c.scalarText(e)
	if !ok {
		return nil
	}
	raw = envToHotswap(raw)
	if !c.checkRefs(m.sc, raw, e.line(), e.path, false) {
		return nil
	}
	if m.sc.reach(raw)[macroPort] && !m.sc.port {
		c.p.addf(e.line(), e.path, "uses ${PORT} but cmd does not: llama-swap refuses this too; add ${PORT} to cmd")
		return nil
	}
	return []*out{{key: "proxy", value: renderString(c.translate(raw), false)}}
}

// scalarText is a single value's text as written.
func (c *converter) scalarText(e entry) (string, bool) {
	if e.v.Kind != yaml.ScalarNode {
		c.p.addf(e.line(), e.path, "must be a string, got %s", describe(e.v))
		return "", false
	}
	return e.v.Value, true
}

func (c *converter) aliasesOut(m *model, e entry) []*out {
	var res []*out
	if len(m.aliases) > 0 {
		o := &out{key: "aliases", value: flowList(m.aliases)}
		if m.self != nil {
			o.line = "llama-swap applied setParamsByID's " + m.id + " entry to " + m.id + " alone; hotswap's params apply to these aliases too"
		}
		res = append(res, o)
	}
	names := make([]string, 0, len(m.aliasOff))
	for a := range m.aliasOff {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		res = append(res, c.noteOff("alias "+renderString(a, true)+": "+m.aliasOff[a]))
	}
	return res
}

func (c *converter) envOut(m *model, e entry) []*out {
	items, ok := c.stringList(e)
	if !ok {
		return nil
	}
	o := &out{key: "env", list: true}
	var off []*out
	seen := map[string]bool{}
	for i, n := range items {
		path := index(e.path, i)
		raw := envToHotswap(n.Value)
		if !c.checkRefs(m.sc, raw, n.Line, path, false) {
			continue
		}
		key, _, found := strings.Cut(raw, "=")
		switch {
		case !found || !config.ValidEnvName(key):
			off = append(off, c.noteOff("env entry "+renderString(n.Value, true)+": hotswap takes KEY=VALUE, KEY a variable's name"))
			continue
		case seen[key]:
			off = append(off, c.noteOff("env entry "+renderString(n.Value, true)+": "+key+" is set twice, and which value a program sees depends on its C library"))
			continue
		}
		seen[key] = true
		o.kids = append(o.kids, &out{value: renderString(c.translate(raw), strings.Contains(raw, "${"))})
	}
	if len(o.kids) == 0 {
		return off
	}
	return append([]*out{o}, off...)
}

// healthOut writes checkEndpoint as health.
func (c *converter) healthOut(m *model, e entry) []*out {
	if e.v.Kind != yaml.ScalarNode {
		c.p.addf(e.line(), e.path, "must be a string, got %s", describe(e.v))
		return nil
	}
	v, ok := c.staticName(e.v.Value, m.sc, e.line(), e.path)
	if !ok {
		return nil
	}
	v = strings.TrimSpace(v)
	switch {
	case strings.Contains(v, "${PORT}"):
		return []*out{c.dropped(e, "a health path cannot name the port; hotswap polls /health")}
	case v == "none":
		return []*out{{key: "health", value: "/",
			line: "checkEndpoint: none; hotswap always waits for a path to answer 200: set the backend's own"}}
	case v == "":
		return nil
	case !strings.HasPrefix(v, "/"):
		return []*out{{key: "health", value: renderString("/"+v, false), line: "checkEndpoint: " + v}}
	}
	return []*out{{key: "health", value: renderString(v, false)}}
}

func (c *converter) ttlOut(m *model, e entry) []*out {
	v, ok := c.intOf(e, m.sc)
	switch {
	case !ok:
		return nil
	case v == -1 && c.globalTTL > 0:
		return []*out{{key: "ttl", value: seconds(c.globalTTL), line: "ttl: -1, the file's globalTTL"}}
	case v == -1:
		return nil
	case v < 0:
		c.p.addf(e.line(), e.path, "invalid TTL %d (0 is never; -1 the file's globalTTL)", v)
		return nil
	}
	return []*out{{key: "ttl", value: seconds(v)}}
}

func (c *converter) upstreamOut(m *model, e entry) []*out {
	if e.v.Kind != yaml.ScalarNode {
		c.p.addf(e.line(), e.path, "must be a string, got %s", describe(e.v))
		return nil
	}
	text, port, ok := c.staticScalar(e.v, m.sc, e.line(), e.path)
	if !ok {
		return nil
	}
	name, _ := c.staticName(e.v.Value, m.sc, e.line(), e.path)
	switch {
	case port:
		return []*out{c.dropped(e, "the name sent upstream cannot hold the port: hotswap draws it at each start")}
	case name == "":
		return nil
	case !validName(name):
		return []*out{c.dropped(e, "hotswap's upstream_model holds no spaces or control characters")}
	}
	return []*out{{key: "upstream_model", value: text, line: "useModelName"}}
}

// infoOut writes name and description, which llama-swap trims.
func (c *converter) infoOut(m *model, e entry) []*out {
	if e.v.Kind != yaml.ScalarNode {
		c.p.addf(e.line(), e.path, "must be a string, got %s", describe(e.v))
		return nil
	}
	n := *e.v
	if n.Tag == "!!str" {
		n.Value = strings.TrimSpace(n.Value)
	}
	text, port, ok := c.staticScalar(&n, m.sc, e.line(), e.path)
	switch {
	case !ok:
		return nil
	case port:
		return []*out{c.dropped(e, "hotswap draws a model's port at each start: a name or description cannot show it")}
	case n.Value == "":
		return nil
	}
	if n.Tag != "!!str" {
		text = renderString(n.Value, true)
	}
	return []*out{{key: e.key, value: text}}
}

// capabilitiesOut writes llama-swap's in, out and tools as hotswap's list.
func (c *converter) capabilitiesOut(m *model, e entry) []*out {
	f, _ := c.p.fields(e.v, e.line(), e.path, "in", "out", "tools", "reranker", "context")
	has := map[string]bool{}
	var in, outs []string
	modal := func(key string, dst *[]string) {
		fe, ok := f[key]
		if !ok {
			return
		}
		items, _ := c.stringList(fe)
		for i, n := range items {
			v, ok := c.staticName(n.Value, m.sc, n.Line, index(fe.path, i))
			if !ok {
				continue
			}
			if !contains([]string{"text", "audio", "image"}, v) {
				c.p.addf(n.Line, index(fe.path, i), "invalid modality %q (llama-swap's are text, audio, image)", v)
				continue
			}
			has[v] = true
			*dst = append(*dst, v)
		}
	}
	modal("in", &in)
	modal("out", &outs)
	if te, ok := f["tools"]; ok {
		if v, ok := c.boolOf(te, m.sc); ok && v {
			has["tools"] = true
		}
	}
	var list []string
	for _, k := range []string{"text", "image", "audio", "tools"} {
		if has[k] {
			list = append(list, k)
		}
	}
	var res []*out
	if len(list) > 0 {
		o := &out{key: "capabilities", value: flowList(list)}
		if strings.Join(in, ",") != strings.Join(outs, ",") {
			o.line = fmt.Sprintf("in: [%s], out: [%s]; hotswap's capabilities do not tell what goes in from what comes out",
				strings.Join(in, ", "), strings.Join(outs, ", "))
		}
		res = append(res, o)
	}
	if re, ok := f["reranker"]; ok {
		if v, ok := c.boolOf(re, m.sc); ok && v {
			res = append(res, c.dropped(re, "(capabilities) hotswap's have no reranker; /v1/rerank is forwarded like any request that names the model"))
		}
	}
	if ce, ok := f["context"]; ok {
		if v, ok := c.intOf(ce, m.sc); ok {
			if v < 0 {
				c.p.addf(ce.line(), ce.path, "must be at least 0, got %d", v)
			} else if v > 0 {
				res = append(res, c.dropped(ce, "(capabilities) hotswap's /v1/models entries carry no context length (metadata can show it)"))
			}
		}
	}
	return res
}
