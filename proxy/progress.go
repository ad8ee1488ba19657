package proxy

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hotswap/hotswap/config"
	"github.com/hotswap/hotswap/events"
	"github.com/hotswap/hotswap/router"
	"github.com/hotswap/hotswap/swapper"
)

// Load progress: what a request that waits for its model is told in
// words, for chat windows that show no SSE comment (load_progress, see
// config.LoadProgressReasoning). The words come from what hotswap knows
// already: the backend's state and its last start's duration (the
// swapper's Status), the queue's counters (the router's Stats), and the
// evictions made for the model (the events hub). Nothing here is on the
// fast path: a progress is made only once a request has waited.

// progressPoll is how often a waiting request with load progress looks
// for something new to say; comments keep the stream alive in between as
// they do without progress.
const progressPoll = time.Second

// countdownEvery is how often a loading model's elapsed time is said
// again: a line a second would bury the others.
const countdownEvery = 5 * time.Second

// progress follows one waiting request and says what it waits for, one
// line per change. Its methods are for the one goroutine serving the
// request; no lock is taken but the swapper's, briefly, for its Status.
type progress struct {
	s     *Server
	model string // the model's id, as the swapper and router know it
	t     *router.Ticket
	sub   *events.Subscription // nil without an events hub

	evicts  []string // evictions made for the model, not yet said
	said    string   // the last situation said (its kind, for the countdown)
	counted time.Time
	loaded  bool // the model was seen loading
}

// newProgress starts following t, a request for model that has to wait.
// Close it once the wait is over.
func (s *Server) newProgress(model string, t *router.Ticket) *progress {
	p := &progress{s: s, model: model, t: t}
	if s.events != nil {
		// The evictions made for a load this request joins were published
		// when the load was decided, before the request began to wait: the
		// hub's recent events say them, then the subscription what follows.
		var past []events.Event
		p.sub, past = s.events.SubscribeAfter(64, false, 0)
		for _, e := range past {
			p.event(e)
		}
	}
	return p
}

// event takes in one event from the hub.
func (p *progress) event(e events.Event) {
	switch {
	case e.Type == events.Evict && e.Data["for"] == p.model:
		why, _ := e.Data["reason"].(string)
		if why == "" {
			why = "making room"
		}
		line := fmt.Sprintf("unloading %s: %s for %s", e.Model, why, p.model)
		if busy, _ := e.Data["busy"].(bool); busy {
			line += " (its requests in flight finish first)"
		}
		p.evicts = append(p.evicts, line)
	case e.Model == p.model && (e.Type == events.Ready || e.Type == events.Stop ||
		e.Type == events.Fail || e.Type == events.Crash || e.Type == events.Refuse):
		// An earlier life of the model is over: the evictions made for it
		// are not this request's.
		p.evicts = p.evicts[:0]
	}
}

// next returns what there is to say now that was not said before: one or
// more lines, each ending in "\n", and true; or "", false. The first call
// always says where the request is.
//
// The Ollama glue calls it while an Ollama request waits, every second or
// so, and sends the text as the reply's "thinking"; then ready once the
// wait is over, and close.
func (p *progress) next() (text string, changed bool) {
	if p.sub != nil {
		for drained := false; !drained; {
			select {
			case e := <-p.sub.C():
				p.event(e)
			default:
				drained = true
			}
		}
	}
	var b strings.Builder
	for _, l := range p.evicts {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	p.evicts = p.evicts[:0]
	kind, line := p.situation()
	now := p.s.clock.Now()
	if kind != p.said || (kind == "loading" && now.Sub(p.counted) >= countdownEvery) {
		p.said, p.counted = kind, now
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String(), b.Len() > 0
}

// situation says where the request is now. kind tells situations apart
// (a loading model's line changes every second: its kind does not).
func (p *progress) situation() (kind, line string) {
	var st swapper.Status
	ok := false
	if p.s.status != nil {
		st, ok = p.s.status(p.model)
	}
	if !ok {
		line = fmt.Sprintf("waiting for %s: %s", p.model, p.t.Phase())
		return line, line
	}
	switch st.State {
	case swapper.Starting:
		if st.Waking {
			// An asleep process, woken (or about to be, once there is
			// room): its wake time is what to go by.
			p.loaded = true
			return "loading", progressLine("waking", "wake", p.model, p.s.clock.Now().Sub(st.Since), st.WakeTook)
		}
		if st.Started.IsZero() {
			// Decided, and waiting for the memory: victims draining or
			// stopping, or their memory yet to show free.
			return "room", fmt.Sprintf("making room for %s", p.model)
		}
		p.loaded = true
		return "loading", loadingLine(p.model, p.s.clock.Now().Sub(st.Started), st.StartTook)
	case swapper.Ready:
		// Loaded, and every one of its slots is taken: the request waits
		// for one of them.
		line = fmt.Sprintf("queued for %s: it is busy with other requests", p.model)
		if rs := p.s.router.Stats(p.model); rs != nil {
			if n := rs.Queued.Load(); n > 1 {
				line = fmt.Sprintf("queued for %s: it is busy, %d requests waiting", p.model, n)
			}
		}
		return line, line
	case swapper.Draining, swapper.Stopping:
		line = fmt.Sprintf("waiting for %s: it is stopping, to be started again", p.model)
		return line, line
	case swapper.Sleeping:
		line = fmt.Sprintf("waiting for %s: it is going to sleep, to be woken again", p.model)
		return line, line
	}
	load := "load"
	if st.State == swapper.Asleep {
		load = "wake"
	}
	// Stopped: its turn to load has not come, other models being served
	// first (the batch policy's max_wait bounds that).
	if busy := p.busyOthers(); len(busy) > 0 {
		verb := "are"
		if len(busy) == 1 {
			verb = "is"
		}
		line = fmt.Sprintf("queued for %s: it %ss once %s %s done", p.model, load, strings.Join(busy, ", "), verb)
	} else {
		line = fmt.Sprintf("queued for %s: waiting for its turn to %s", p.model, load)
	}
	return line, line
}

// busyOthers lists (up to three of) the other models serving requests
// now: those the request waits behind.
func (p *progress) busyOthers() []string {
	var busy []string
	for _, id := range p.s.config().ModelIDs {
		if id == p.model {
			continue
		}
		if rs := p.s.router.Stats(id); rs != nil && rs.InFlight.Load() > 0 {
			busy = append(busy, id)
			if len(busy) == 3 {
				break
			}
		}
	}
	return busy
}

// loadingLine says how far a load is, against how long the last one took.
func loadingLine(model string, took, last time.Duration) string {
	return progressLine("loading", "start", model, took, last)
}

// progressLine says how far a load (or a wake: doing, of what) is,
// against how long the last one took.
func progressLine(doing, what, model string, took, last time.Duration) string {
	secs := int(took / time.Second)
	about := max(1, int(math.Round(last.Seconds())))
	switch {
	case last <= 0 && secs == 0:
		return fmt.Sprintf("%s %s (first %s)", doing, model, what)
	case last <= 0:
		return fmt.Sprintf("%s %s: %d s (first %s)", doing, model, secs, what)
	case secs == 0:
		return fmt.Sprintf("%s %s: about %d s (from the last %s)", doing, model, about, what)
	case secs <= about:
		return fmt.Sprintf("%s %s: %d s of about %d (from the last %s)", doing, model, secs, about, what)
	}
	return fmt.Sprintf("%s %s: %d s, longer than the last %s (%d s)", doing, model, secs, what, about)
}

// ready is the last line, once the request's wait is over and its
// backend has it.
func (p *progress) ready() string {
	waited := int(p.t.Waited().Round(time.Second) / time.Second)
	if p.loaded {
		return fmt.Sprintf("%s is ready (waited %d s)\n", p.model, waited)
	}
	return fmt.Sprintf("%s is answering (waited %d s)\n", p.model, waited)
}

// close stops following the events.
func (p *progress) close() {
	if p.sub != nil {
		p.sub.Close()
	}
}

// chatProgress writes a progress's text as OpenAI chat.completion.chunk
// events, which chat windows show as the answer's reasoning or text.
type chatProgress struct {
	mode    string // config.LoadProgressReasoning or config.LoadProgressContent
	name    string // the model as the client named it
	id      string
	created int64
	sent    bool // the first chunk, which carries the role, is out
}

// progressMode is the load progress a streamed request on path for model
// is sent while it waits: config.LoadProgressOff but for chat completions
// of a model whose load_progress is on. Read from the configuration now,
// so that a reload applies to the next request.
//
// Only chat completions: a chat window shows their reasoning and content.
// Text completions (/v1/completions) are mostly read by programs (code
// completion, fill-in-the-middle) that take the text as it comes, where
// words about a load would corrupt the output; Anthropic's Messages and
// the Responses API have typed events of their own. Those keep comments.
func (s *Server) progressMode(model string, path []byte) string {
	switch string(path) {
	case "/v1/chat/completions", "/chat/completions":
	default:
		return config.LoadProgressOff
	}
	m, ok := s.config().Models[model]
	if !ok || m.LoadProgress == "" {
		return config.LoadProgressOff
	}
	return m.LoadProgress
}

// chunk is one event carrying a progress's lines. They become
// paragraphs: chat windows render markdown, where lines one newline apart
// run together.
func (c *chatProgress) chunk(lines string) []byte {
	return c.event(strings.ReplaceAll(lines, "\n", "\n\n"))
}

// last is the chunk that ends the progress. In content mode a rule sets
// the answer apart from it (after a blank line, so that markdown does not
// read the rule as a heading's underline).
func (c *chatProgress) last(lines string) []byte {
	text := strings.ReplaceAll(lines, "\n", "\n\n")
	if c.mode == config.LoadProgressContent {
		text += "---\n\n"
	}
	return c.event(text)
}

// event is a chat.completion.chunk event whose delta is text.
func (c *chatProgress) event(text string) []byte {
	type delta struct {
		Role             string `json:"role,omitempty"`
		Content          string `json:"content,omitempty"`
		ReasoningContent string `json:"reasoning_content,omitempty"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Delta        delta   `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	}
	var d delta
	if !c.sent {
		d.Role = "assistant"
		c.sent = true
	}
	if c.mode == config.LoadProgressContent {
		d.Content = text
	} else {
		d.ReasoningContent = text
	}
	data, _ := json.Marshal(struct {
		ID      string   `json:"id"`
		Object  string   `json:"object"`
		Created int64    `json:"created"`
		Model   string   `json:"model"`
		Choices []choice `json:"choices"`
	}{c.id, "chat.completion.chunk", c.created, c.name, []choice{{Delta: d}}})
	out := make([]byte, 0, len(data)+8)
	out = append(out, "data: "...)
	out = append(out, data...)
	return append(out, "\n\n"...)
}
