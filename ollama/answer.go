package ollama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxLine bounds a backend's SSE line held between reads: a backend that
// never ends its line must not grow the proxy's memory without end.
const maxLine = 16 << 20

// Answer turns one backend answer into Ollama's.
//
// A streamed answer becomes NDJSON lines, each ended by "\n":
//
//   - each chunk's delta.content (completions: text) and
//     delta.reasoning_content (or delta.reasoning) → one line with
//     message.content and message.thinking (generate: response and
//     thinking), done:false; chunks with neither (the role, usage) make none;
//   - tool call deltas are gathered and sent whole on one line just before
//     the final one, their arguments decoded into an object (arguments that
//     are no JSON object, such as a call cut by the token limit, are sent as
//     content instead: the model's words, not a call);
//   - the final line (at [DONE], or at End when the stream ended cleanly
//     without it) has done:true, done_reason ("length" for finish_reason
//     "length", else "stop": Ollama has no "tool_calls") and the statistics;
//   - an error event (data: {"error": ...}, or such an object on a line of
//     its own) → an {"error": "..."} line, and nothing after it.
//
// Statistics, in nanoseconds and left out when zero as Ollama does:
// total_duration from the request's arrival, load_duration as set,
// prompt_eval_count and eval_count from usage (else llama-server's timings'
// prompt_n and predicted_n), prompt_eval_duration and eval_duration from
// llama-server's timings (prompt_ms, predicted_ms) when sent, else the time
// to the first token (less the load) and the time from it to the end. A
// whole answer without timings has no first token to split at: its
// eval_duration is its whole time less the load.
//
// The model field is always the client's name.
type Answer struct {
	r     *Request
	start time.Time
	now   func() time.Time
	load  time.Duration

	model []byte    // the client's name, JSON-quoted once
	first time.Time // when the first token came; zero until then
	buf   []byte    // a line cut between reads

	calls  []callAcc
	finish string // the backend's finish_reason

	promptCount, evalCount int64
	promptMS, evalMS       float64
	timed                  bool // the backend sent timings

	done bool
}

// callAcc is one tool call gathered from its deltas.
type callAcc struct {
	index int
	id    string
	name  string
	args  []byte
}

// NewAnswer starts the answer to r. start is when the request arrived (for
// total_duration); now is the clock.
func NewAnswer(r *Request, start time.Time, now func() time.Time) *Answer {
	return &Answer{r: r, start: start, now: now, model: appendString(nil, r.Model)}
}

// SetLoadDuration records how long the request waited for its model to load
// (load_duration).
func (a *Answer) SetLoadDuration(d time.Duration) { a.load = d }

// Done reports whether the final line has been written.
func (a *Answer) Done() bool { return a.done }

// Feed translates a streamed backend answer (OpenAI SSE, cut anywhere
// between reads) into NDJSON lines appended to dst. It keeps state across
// calls. Data events are taken one line each, as OpenAI-compatible backends
// send them; comments (":...") and other fields (event:, id:) are skipped.
func (a *Answer) Feed(dst, src []byte) []byte {
	for len(src) > 0 && !a.done {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			if len(a.buf)+len(src) > maxLine {
				a.buf = nil
				return a.fail(dst, "the backend sent a line longer than 16 MiB")
			}
			a.buf = append(a.buf, src...)
			return dst
		}
		line := src[:i]
		if len(a.buf) > 0 {
			a.buf = append(a.buf, line...)
			line = a.buf
		}
		dst = a.line(dst, line)
		a.buf = a.buf[:0]
		src = src[i+1:]
	}
	return dst
}

// End is called once the backend's stream has ended (err nil: cleanly;
// else it was cut). It appends the final line if it has not been sent yet:
// the done line, or an {"error": ...} line if the stream was cut or carried
// an error event.
func (a *Answer) End(dst []byte, err error) []byte {
	if a.done {
		return dst
	}
	if len(a.buf) > 0 { // a last line without its "\n"
		line := a.buf
		a.buf = nil
		dst = a.line(dst, line)
		if a.done {
			return dst
		}
	}
	if err != nil {
		return a.fail(dst, fmt.Sprintf("the backend's answer was cut: %v", err))
	}
	return a.final(dst)
}

// line handles one SSE line.
func (a *Answer) line(dst, l []byte) []byte {
	l = bytes.TrimSuffix(l, []byte("\r"))
	data, ok := bytes.CutPrefix(l, []byte("data:"))
	if !ok {
		// A backend that fails before streaming may answer a bare JSON
		// error instead of an event.
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] == '{' {
			var e struct {
				Error json.RawMessage `json:"error"`
			}
			if json.Unmarshal(t, &e) == nil && len(e.Error) > 0 && !isNull(e.Error) {
				return a.fail(dst, errorText(e.Error))
			}
		}
		return dst
	}
	data = bytes.TrimSpace(data)
	if string(data) == "[DONE]" {
		return a.final(dst)
	}
	var c chunk
	if json.Unmarshal(data, &c) != nil {
		return dst // not JSON: nothing a client could be told
	}
	if len(c.Error) > 0 && !isNull(c.Error) {
		return a.fail(dst, errorText(c.Error))
	}
	a.stats(c.Usage, c.Timings)
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue // Ollama answers one choice
		}
		d := ch.Delta
		text := ch.Text
		if d.Content != nil {
			text = *d.Content
		}
		thinking := d.ReasoningContent
		if thinking == "" {
			thinking = d.Reasoning
		}
		for _, tc := range d.ToolCalls {
			a.gather(tc)
		}
		if text != "" || thinking != "" || len(d.ToolCalls) > 0 {
			if a.first.IsZero() {
				a.first = a.now()
			}
		}
		if text != "" || thinking != "" {
			dst = a.head(dst)
			dst = a.appendText(dst, text, thinking)
			dst = append(dst, `,"done":false}`+"\n"...)
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			a.finish = *ch.FinishReason
		}
	}
	return dst
}

// gather adds one tool call delta to its call.
func (a *Answer) gather(tc callDelta) {
	var c *callAcc
	for i := range a.calls {
		if a.calls[i].index == tc.Index {
			c = &a.calls[i]
			break
		}
	}
	if c == nil {
		a.calls = append(a.calls, callAcc{index: tc.Index})
		c = &a.calls[len(a.calls)-1]
	}
	if tc.ID != "" {
		c.id = tc.ID
	}
	if tc.Function.Name != "" {
		c.name = tc.Function.Name
	}
	c.args = appendArgs(c.args, tc.Function.Arguments)
}

// appendArgs appends a call's arguments as the backend sent them: a JSON
// string's text (OpenAI's way) or, from a backend that sends them as an
// object, the object's text.
func appendArgs(dst []byte, v json.RawMessage) []byte {
	if len(v) == 0 || isNull(v) {
		return dst
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return append(dst, s...)
	}
	return append(dst, v...)
}

// stats records usage and timings when a chunk carries them.
func (a *Answer) stats(u *usage, t *timings) {
	if t != nil {
		a.timed = true
		a.promptMS, a.evalMS = t.PromptMS, t.PredictedMS
		if a.promptCount == 0 && a.evalCount == 0 {
			a.promptCount, a.evalCount = t.PromptN, t.PredictedN
		}
	}
	if u != nil {
		a.promptCount, a.evalCount = u.PromptTokens, u.CompletionTokens
	}
}

// final appends the tool calls' line, when there were calls, and the done
// line.
func (a *Answer) final(dst []byte) []byte {
	a.done = true
	if len(a.calls) > 0 {
		dst = a.head(dst)
		dst = a.appendCalls(dst, a.calls, "", "")
		dst = append(dst, `,"done":false}`+"\n"...)
	}
	now := a.now() // one instant for created_at and total_duration
	dst = appendHead(dst, a.model, now)
	dst = a.appendText(dst, "", "")
	dst = a.appendDone(dst, now, true)
	return append(dst, "}\n"...)
}

// fail appends an error line and ends the answer.
func (a *Answer) fail(dst []byte, msg string) []byte {
	a.done = true
	dst = append(dst, ErrorBody(msg)...)
	return append(dst, '\n')
}

// head opens a line: {"model":...,"created_at":"..."
func (a *Answer) head(dst []byte) []byte {
	return appendHead(dst, a.model, a.now())
}

func appendHead(dst, model []byte, now time.Time) []byte {
	dst = append(dst, `{"model":`...)
	dst = append(dst, model...)
	dst = append(dst, `,"created_at":"`...)
	dst = now.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendText appends the answer's text in the endpoint's shape: chat's
// message, generate's response.
func (a *Answer) appendText(dst []byte, text, thinking string) []byte {
	return appendText(dst, a.r.Endpoint, text, thinking)
}

func appendText(dst []byte, ep Endpoint, text, thinking string) []byte {
	if ep == Generate {
		dst = append(dst, `,"response":`...)
		dst = appendString(dst, text)
		if thinking != "" {
			dst = append(dst, `,"thinking":`...)
			dst = appendString(dst, thinking)
		}
		return dst
	}
	dst = append(dst, `,"message":{"role":"assistant","content":`...)
	dst = appendString(dst, text)
	if thinking != "" {
		dst = append(dst, `,"thinking":`...)
		dst = appendString(dst, thinking)
	}
	return append(dst, '}')
}

// appendCalls appends the answer's text, thinking and tool calls: chat's
// message with its tool_calls, generate's response with tool_calls beside
// it. A call whose arguments are no JSON object is given as text.
func (a *Answer) appendCalls(dst []byte, calls []callAcc, text, thinking string) []byte {
	words := []byte(text)
	list := make([]byte, 0, 64)
	list = append(list, '[')
	n := 0
	for _, c := range calls {
		args := bytes.TrimSpace(c.args)
		if len(args) == 0 {
			args = []byte("{}")
		}
		if args[0] != '{' || !json.Valid(args) {
			words = append(words, c.args...)
			continue
		}
		if n > 0 {
			list = append(list, ',')
		}
		list = append(list, '{')
		if c.id != "" {
			list = append(list, `"id":`...)
			list = appendString(list, c.id)
			list = append(list, ',')
		}
		list = append(list, `"function":{"index":`...)
		list = strconv.AppendInt(list, int64(n), 10)
		list = append(list, `,"name":`...)
		list = appendString(list, c.name)
		list = append(list, `,"arguments":`...)
		buf := bytes.NewBuffer(list)
		_ = json.Compact(buf, args) // valid: checked above
		list = append(buf.Bytes(), "}}"...)
		n++
	}
	list = append(list, ']')
	if a.r.Endpoint == Generate {
		dst = appendText(dst, Generate, string(words), thinking)
		if n > 0 {
			dst = append(dst, `,"tool_calls":`...)
			dst = append(dst, list...)
		}
		return dst
	}
	dst = appendText(dst, Chat, string(words), thinking)
	if n > 0 {
		dst = append(dst[:len(dst)-1], `,"tool_calls":`...) // inside the message
		dst = append(dst, list...)
		dst = append(dst, '}')
	}
	return dst
}

// appendDone appends done:true, done_reason and the statistics. streamed
// says whether the time to the first token splits prompt from eval.
func (a *Answer) appendDone(dst []byte, now time.Time, streamed bool) []byte {
	reason := "stop"
	if a.finish == "length" {
		reason = "length"
	}
	dst = append(dst, `,"done":true,"done_reason":"`...)
	dst = append(dst, reason...)
	dst = append(dst, '"')

	total := nonNegative(now.Sub(a.start))
	var promptDur, evalDur time.Duration
	switch {
	case a.timed:
		promptDur = time.Duration(a.promptMS * float64(time.Millisecond))
		evalDur = time.Duration(a.evalMS * float64(time.Millisecond))
	case !streamed:
		evalDur = total - a.load
	case a.first.IsZero():
		promptDur = total - a.load
	default:
		promptDur = a.first.Sub(a.start) - a.load
		evalDur = now.Sub(a.first)
	}
	dst = appendStat(dst, "total_duration", int64(total))
	dst = appendStat(dst, "load_duration", int64(nonNegative(a.load)))
	dst = appendStat(dst, "prompt_eval_count", a.promptCount)
	dst = appendStat(dst, "prompt_eval_duration", int64(nonNegative(promptDur)))
	dst = appendStat(dst, "eval_count", a.evalCount)
	return appendStat(dst, "eval_duration", int64(nonNegative(evalDur)))
}

// appendStat appends ,"name":n, or nothing when n is not positive (Ollama
// leaves zero statistics out).
func appendStat(dst []byte, name string, n int64) []byte {
	if n <= 0 {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, n, 10)
}

func nonNegative(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// Whole translates a backend's whole (non-streamed) JSON answer. A backend
// error (status >= 400) becomes Ollama's {"error": ...} with the backend's
// message; so does an answer that cannot be read.
func (a *Answer) Whole(status int, body []byte) []byte {
	a.done = true
	if status >= 400 {
		return ErrorBody(backendError(status, body))
	}
	switch a.r.Endpoint {
	case Embed, Embeddings:
		return a.wholeEmbed(body)
	}
	var c whole
	if err := json.Unmarshal(body, &c); err != nil {
		return ErrorBody(fmt.Sprintf("the backend's answer is not JSON: %v", err))
	}
	if len(c.Error) > 0 && !isNull(c.Error) {
		return ErrorBody(errorText(c.Error))
	}
	a.stats(c.Usage, c.Timings)
	var text, thinking string
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue
		}
		text = ch.Text
		if ch.Message.Content != nil {
			text = *ch.Message.Content
		}
		thinking = ch.Message.ReasoningContent
		if thinking == "" {
			thinking = ch.Message.Reasoning
		}
		for i, tc := range ch.Message.ToolCalls {
			a.calls = append(a.calls, callAcc{index: i, id: tc.ID, name: tc.Function.Name,
				args: appendArgs(nil, tc.Function.Arguments)})
		}
		if ch.FinishReason != nil {
			a.finish = *ch.FinishReason
		}
	}
	now := a.now()
	dst := appendHead(nil, a.model, now)
	if len(a.calls) > 0 {
		dst = a.appendCalls(dst, a.calls, text, thinking)
	} else {
		dst = a.appendText(dst, text, thinking)
	}
	dst = a.appendDone(dst, now, false)
	return append(dst, '}')
}

// wholeEmbed translates an OpenAI embeddings answer, the vectors' numbers
// kept as the backend wrote them.
func (a *Answer) wholeEmbed(body []byte) []byte {
	var e struct {
		Data []struct {
			Embedding json.RawMessage `json:"embedding"`
			Index     int             `json:"index"`
		} `json:"data"`
		Usage *usage          `json:"usage"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return ErrorBody(fmt.Sprintf("the backend's answer is not JSON: %v", err))
	}
	if len(e.Error) > 0 && !isNull(e.Error) {
		return ErrorBody(errorText(e.Error))
	}
	sort.SliceStable(e.Data, func(i, j int) bool { return e.Data[i].Index < e.Data[j].Index })
	var dst []byte
	vector := func(dst []byte, v json.RawMessage) []byte {
		if len(v) == 0 || isNull(v) {
			return append(dst, "[]"...)
		}
		buf := bytes.NewBuffer(dst)
		if json.Compact(buf, v) != nil {
			return append(dst, "[]"...)
		}
		return buf.Bytes()
	}
	if a.r.Endpoint == Embeddings {
		dst = append(dst, `{"embedding":`...)
		if len(e.Data) > 0 {
			dst = vector(dst, e.Data[0].Embedding)
		} else {
			dst = append(dst, "[]"...)
		}
		return append(dst, '}')
	}
	dst = append(dst, `{"model":`...)
	dst = append(dst, a.model...)
	dst = append(dst, `,"embeddings":[`...)
	for i, d := range e.Data {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = vector(dst, d.Embedding)
	}
	dst = append(dst, ']')
	dst = appendStat(dst, "total_duration", int64(nonNegative(a.now().Sub(a.start))))
	dst = appendStat(dst, "load_duration", int64(nonNegative(a.load)))
	if e.Usage != nil {
		dst = appendStat(dst, "prompt_eval_count", e.Usage.PromptTokens)
	}
	return append(dst, '}')
}

// backendError finds the message in a backend's error answer: OpenAI's
// {"error":{"message"}}, {"error":"..."}, vLLM's {"message"} or FastAPI's
// {"detail"}; else its text; else its status.
func backendError(status int, body []byte) string {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &e) == nil {
		switch {
		case len(e.Error) > 0 && !isNull(e.Error):
			return errorText(e.Error)
		case e.Message != "":
			return e.Message
		case len(e.Detail) > 0 && !isNull(e.Detail):
			return errorText(e.Detail)
		}
	}
	if t := strings.TrimSpace(string(body)); t != "" {
		if len(t) > 1000 {
			t = t[:1000] + "..."
		}
		return t
	}
	return fmt.Sprintf("the backend answered status %d", status)
}

// errorText is an error value's message: a string, an object's "message",
// else the value's JSON text.
func errorText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var o struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(v, &o) == nil && o.Message != "" {
		return o.Message
	}
	return string(bytes.TrimSpace(v))
}

// LoadAnswer is the answer to an Empty request: {"model","created_at",
// "response":"" (generate) or "message":{"role":"assistant","content":""}
// (chat),"done":true,"done_reason":reason} with reason "load" or "unload",
// as Ollama answers. For the embedding endpoints, whose empty input Ollama
// answers with no vectors, it is {"model","embeddings":[]} (embed) or
// {"embedding":[]} (embeddings).
func LoadAnswer(ep Endpoint, model, reason string, now time.Time) []byte {
	switch ep {
	case Embed:
		dst := append([]byte(`{"model":`), appendString(nil, model)...)
		return append(dst, `,"embeddings":[]}`...)
	case Embeddings:
		return []byte(`{"embedding":[]}`)
	}
	dst := appendHead(nil, appendString(nil, model), now)
	dst = appendText(dst, ep, "", "")
	dst = append(dst, `,"done":true,"done_reason":`...)
	dst = appendString(dst, reason)
	return append(dst, '}')
}

// ProgressLine is one streamed line, ended by "\n", carrying text as
// thinking (chat: message.thinking; generate: thinking), done:false, for
// load progress shown while a model loads: clients show thinking apart from
// the answer, so the progress does not become part of it. The embedding
// endpoints do not stream: for them it is nil.
func ProgressLine(ep Endpoint, model, text string, now time.Time) []byte {
	if ep != Chat && ep != Generate {
		return nil
	}
	dst := appendHead(nil, appendString(nil, model), now)
	dst = appendText(dst, ep, "", text)
	return append(dst, `,"done":false}`+"\n"...)
}

// chunk is one OpenAI stream chunk (chat or completions) as far as it is
// read.
type chunk struct {
	Choices []struct {
		Index        int     `json:"index"`
		Delta        said    `json:"delta"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage   *usage          `json:"usage"`
	Timings *timings        `json:"timings"`
	Error   json.RawMessage `json:"error"`
}

// whole is one OpenAI answer (chat or completions) as far as it is read.
type whole struct {
	Choices []struct {
		Index        int     `json:"index"`
		Message      said    `json:"message"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage   *usage          `json:"usage"`
	Timings *timings        `json:"timings"`
	Error   json.RawMessage `json:"error"`
}

// said is what an OpenAI answer's message, or a stream chunk's delta,
// carries.
type said struct {
	Content          *string     `json:"content"`
	ReasoningContent string      `json:"reasoning_content"`
	Reasoning        string      `json:"reasoning"`
	ToolCalls        []callDelta `json:"tool_calls"`
}

// callDelta is an OpenAI tool call, or a piece of one in a stream.
type callDelta struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

type usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// timings is llama-server's own account of an answer's time.
type timings struct {
	PromptN     int64   `json:"prompt_n"`
	PromptMS    float64 `json:"prompt_ms"`
	PredictedN  int64   `json:"predicted_n"`
	PredictedMS float64 `json:"predicted_ms"`
}
