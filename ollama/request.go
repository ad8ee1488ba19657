package ollama

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Endpoint is one of Ollama's inference endpoints.
type Endpoint int

const (
	Chat       Endpoint = iota // /api/chat
	Generate                   // /api/generate
	Embed                      // /api/embed
	Embeddings                 // /api/embeddings (the older one: prompt → one embedding)
)

// The backend paths a translated request goes to.
const (
	pathChat        = "/v1/chat/completions"
	pathCompletions = "/v1/completions"
	pathEmbeddings  = "/v1/embeddings"
)

// EndpointOf maps a path (/api/chat, ...) to its Endpoint.
func EndpointOf(path string) (Endpoint, bool) {
	switch path {
	case "/api/chat":
		return Chat, true
	case "/api/generate":
		return Generate, true
	case "/api/embed":
		return Embed, true
	case "/api/embeddings":
		return Embeddings, true
	}
	return 0, false
}

// Request is an Ollama request, translated for an OpenAI-compatible backend.
type Request struct {
	Endpoint Endpoint
	Model    string // as the client named it
	Path     string // the backend path: /v1/chat/completions, /v1/completions or /v1/embeddings
	// Body is the OpenAI request body; its "model" is the client's name (the
	// proxy may shape it afterwards). Its keys are sorted, so that the same
	// request always makes the same bytes.
	Body []byte
	// Stream: the client reads an NDJSON stream. Ollama's default is true;
	// embeddings never stream.
	Stream bool
	// KeepAlive is nil when not sent; < 0: keep loaded; 0: unload once answered.
	KeepAlive *time.Duration
	// Empty: no prompt / no messages / no input. For chat and generate this is
	// Ollama's "load the model" (or, with keep_alive 0, "unload it") request,
	// to be answered with LoadAnswer, not forwarded.
	Empty bool
	// Ignored names what was sent but has no OpenAI equivalent, sorted, for a
	// debug line: top-level fields by name ("template", "context"), options
	// as "options.NAME".
	Ignored []string
}

// Parse reads and translates an Ollama request. Its errors are the client's
// (bad JSON, no model, a wrong type), to be answered 400 with their message.
//
// What is mapped how:
//
//   - /api/chat → /v1/chat/completions. messages keep role and content;
//     images become OpenAI content parts with data: URLs (the mime type
//     sniffed from the image's first bytes: png, jpeg, gif, webp; jpeg when
//     unknown; a data: URL sent as is stays as is); thinking in history is
//     dropped (backends' templates drop it too); tool_calls become OpenAI
//     tool_calls with their arguments as a JSON string and, when the client
//     sent none, ids "call_N"; a "tool" message gets the tool_call_id it sent,
//     else the id of the first unanswered call of its tool_name (else of the
//     first unanswered call) in the assistant message before it. tools go as
//     sent (Ollama's are OpenAI-shaped).
//   - /api/generate → /v1/chat/completions with a system message (system)
//     and a user message (prompt and images); with raw:true or a suffix,
//     /v1/completions with prompt and suffix, the model's template skipped
//     as Ollama's raw does (system, images and think then go to Ignored).
//     template and context go to Ignored.
//   - format "json" → response_format {"type":"json_object"}; a JSON schema
//     object → response_format {"type":"json_schema","json_schema":{"name":
//     "schema","schema":...}}.
//   - think true/false → chat_template_kwargs.enable_thinking; "low",
//     "medium", "high" → reasoning_effort, and enable_thinking true; "max"
//     (newer Ollama) → reasoning_effort "high", as Ollama does for models
//     that know only three levels.
//   - options: temperature, top_p, seed, stop, frequency_penalty,
//     presence_penalty under their names; num_predict → max_tokens (negative,
//     Ollama's "no limit", is left out); top_k, min_p, typical_p,
//     repeat_penalty, repeat_last_n under their names (llama-server takes
//     them all, vLLM top_k and min_p); the rest (num_ctx, num_gpu,
//     num_thread, mirostat, ...) go to Ignored, as do unknown top-level
//     fields.
//   - stream (default true) → "stream":true and "stream_options":
//     {"include_usage":true}, so that the final line can carry counts.
//   - /api/embed: input (a string or an array of strings) and dimensions →
//     /v1/embeddings; truncate goes to Ignored (OpenAI backends have no
//     common switch for it), as do options (no sampling in an embedding).
//     /api/embeddings: prompt → input.
//   - format with raw or suffix goes as response_format too: vLLM's
//     /v1/completions takes it; llama-server's may not.
//   - keep_alive: a duration string ("5m", "1h30m", "-1s"), a number of
//     seconds as a string ("0", "-1") or a number.
func Parse(ep Endpoint, body []byte) (*Request, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("invalid JSON body: %w", err)
	}
	if fields == nil {
		return nil, errors.New("invalid JSON body: expected an object")
	}
	p := parser{fields: fields, out: map[string]any{}}
	r := &Request{Endpoint: ep}
	model, err := p.str("model")
	if err != nil {
		return nil, err
	}
	if model == "" {
		return nil, errors.New("model is required")
	}
	r.Model = model
	p.out["model"] = model
	if r.KeepAlive, err = p.keepAlive(); err != nil {
		return nil, err
	}

	switch ep {
	case Chat:
		err = p.chat(r)
	case Generate:
		err = p.generate(r)
	case Embed:
		err = p.embed(r)
	case Embeddings:
		err = p.embeddings(r)
	default:
		return nil, fmt.Errorf("unknown endpoint %d", ep)
	}
	if err != nil {
		return nil, err
	}
	if r.Stream {
		p.out["stream"] = true
		p.out["stream_options"] = map[string]bool{"include_usage": true}
	}
	// Whatever no step took is unknown here: it goes to Ignored.
	for name := range p.fields {
		p.ignore(name)
	}
	sort.Strings(p.ignored)
	r.Ignored = p.ignored
	if r.Body, err = marshal(p.out); err != nil {
		return nil, fmt.Errorf("encoding the backend request: %w", err)
	}
	return r, nil
}

// parser takes the fields of one request out of fields as it translates
// them into out, so that what is left at the end is what it did not know.
type parser struct {
	fields  map[string]json.RawMessage
	out     map[string]any
	ignored []string
}

// take removes a field and reports it, with false when it is absent or null
// (Ollama's clients send null for "not set").
func (p *parser) take(name string) (json.RawMessage, bool) {
	v, ok := p.fields[name]
	delete(p.fields, name)
	if !ok || isNull(v) {
		return nil, false
	}
	return v, true
}

func (p *parser) ignore(name string) { p.ignored = append(p.ignored, name) }

// ignoreFields sends the named fields, when sent, to Ignored.
func (p *parser) ignoreFields(names ...string) {
	for _, n := range names {
		if _, ok := p.take(n); ok {
			p.ignore(n)
		}
	}
}

func (p *parser) str(name string) (string, error) {
	v, ok := p.take(name)
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s must be a string", name)
	}
	return s, nil
}

func (p *parser) boolean(name string, def bool) (bool, error) {
	v, ok := p.take(name)
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, fmt.Errorf("%s must be true or false", name)
	}
	return b, nil
}

// stream reads "stream", true when not sent as Ollama's is.
func (p *parser) stream(r *Request) error {
	s, err := p.boolean("stream", true)
	r.Stream = s
	return err
}

// keepAlive reads keep_alive: a duration string, a number of seconds as a
// string ("0", "-1": Ollama's CLI and docs use them) or a JSON number.
func (p *parser) keepAlive() (*time.Duration, error) {
	v, ok := p.take("keep_alive")
	if !ok {
		return nil, nil
	}
	d, err := parseKeepAlive(v)
	if err != nil {
		return nil, fmt.Errorf("keep_alive: %w", err)
	}
	return &d, nil
}

func parseKeepAlive(v json.RawMessage) (time.Duration, error) {
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		s = strings.TrimSpace(s)
		if d, err := time.ParseDuration(s); err == nil {
			return d, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%q is not a duration (like \"5m\", \"0\" or \"-1\") nor a number of seconds", s)
		}
		return seconds(f), nil
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, errors.New("must be a duration string (like \"5m\") or a number of seconds")
	}
	return seconds(f), nil
}

// seconds turns a number of seconds into a Duration, saturating where it
// would overflow (a keep_alive of 1e300 means "forever", not a wrap).
func seconds(f float64) time.Duration {
	ns := f * float64(time.Second)
	switch {
	case ns >= math.MaxInt64:
		return math.MaxInt64
	case ns <= math.MinInt64:
		return math.MinInt64
	}
	return time.Duration(ns)
}

// chat translates /api/chat.
func (p *parser) chat(r *Request) error {
	r.Path = pathChat
	if err := p.stream(r); err != nil {
		return err
	}
	var msgs []message
	if v, ok := p.take("messages"); ok {
		if !isArray(v) {
			return errors.New("messages must be an array")
		}
		if err := json.Unmarshal(v, &msgs); err != nil {
			return fmt.Errorf("messages: %w", typeError(err))
		}
	}
	out, err := chatMessages(msgs)
	if err != nil {
		return err
	}
	p.out["messages"] = out
	r.Empty = len(msgs) == 0
	if v, ok := p.take("tools"); ok {
		if !isArray(v) {
			return errors.New("tools must be an array")
		}
		if !isEmptyArray(v) {
			p.out["tools"] = v
		}
	}
	if err := p.format(); err != nil {
		return err
	}
	if err := p.think(); err != nil {
		return err
	}
	if err := p.options(); err != nil {
		return err
	}
	p.ignoreFields("truncate", "shift", "logprobs", "top_logprobs")
	return nil
}

// generate translates /api/generate.
func (p *parser) generate(r *Request) error {
	if err := p.stream(r); err != nil {
		return err
	}
	prompt, err := p.str("prompt")
	if err != nil {
		return err
	}
	suffix, err := p.str("suffix")
	if err != nil {
		return err
	}
	system, err := p.str("system")
	if err != nil {
		return err
	}
	raw, err := p.boolean("raw", false)
	if err != nil {
		return err
	}
	var images []string
	if v, ok := p.take("images"); ok {
		if err := json.Unmarshal(v, &images); err != nil {
			return errors.New("images must be an array of base64 strings")
		}
	}
	r.Empty = prompt == "" && len(images) == 0

	if raw || suffix != "" {
		// Ollama's raw skips the model's template: the OpenAI completions
		// endpoint is the one that takes a prompt as it is.
		r.Path = pathCompletions
		p.out["prompt"] = prompt
		if suffix != "" {
			p.out["suffix"] = suffix
		}
		if system != "" {
			p.ignore("system")
		}
		if len(images) > 0 {
			p.ignore("images")
		}
		if _, ok := p.take("think"); ok {
			p.ignore("think")
		}
	} else {
		r.Path = pathChat
		var msgs []any
		if system != "" {
			msgs = append(msgs, chatMessage{Role: "system", Content: system})
		}
		if !r.Empty {
			content, err := content(prompt, images)
			if err != nil {
				return err
			}
			msgs = append(msgs, chatMessage{Role: "user", Content: content})
		}
		if msgs == nil {
			msgs = []any{}
		}
		p.out["messages"] = msgs
		if err := p.think(); err != nil {
			return err
		}
	}
	if err := p.format(); err != nil {
		return err
	}
	if err := p.options(); err != nil {
		return err
	}
	p.ignoreFields("template", "context", "truncate", "shift", "logprobs", "top_logprobs")
	return nil
}

// embed translates /api/embed.
func (p *parser) embed(r *Request) error {
	r.Path = pathEmbeddings
	v, ok := p.take("input")
	if ok {
		var s string
		var list []string
		switch {
		case json.Unmarshal(v, &s) == nil:
			r.Empty = s == ""
			p.out["input"] = s
		case json.Unmarshal(v, &list) == nil:
			r.Empty = len(list) == 0
			p.out["input"] = list
		default:
			return errors.New("input must be a string or an array of strings")
		}
	} else {
		r.Empty = true
		p.out["input"] = []string{}
	}
	if v, ok := p.take("dimensions"); ok {
		n, err := integer(v)
		if err != nil {
			return fmt.Errorf("dimensions %w", err)
		}
		if n > 0 {
			p.out["dimensions"] = n
		}
	}
	// Streaming is not an embedding's; Ollama ignores the field too.
	delete(p.fields, "stream")
	p.ignoreFields("truncate")
	return p.embedOptions()
}

// embeddings translates /api/embeddings, the older endpoint.
func (p *parser) embeddings(r *Request) error {
	r.Path = pathEmbeddings
	prompt, err := p.str("prompt")
	if err != nil {
		return err
	}
	r.Empty = prompt == ""
	p.out["input"] = prompt
	delete(p.fields, "stream")
	return p.embedOptions()
}

// embedOptions sends an embedding request's options to Ignored: the
// sampling options mean nothing to an embedding, and the rest (num_ctx,
// num_gpu, ...) are the backend's own settings here.
func (p *parser) embedOptions() error {
	v, ok := p.take("options")
	if !ok {
		return nil
	}
	var opts map[string]json.RawMessage
	if err := json.Unmarshal(v, &opts); err != nil || opts == nil {
		return errors.New("options must be an object")
	}
	for name := range opts {
		p.ignore("options." + name)
	}
	return nil
}

// format maps Ollama's format to OpenAI's response_format.
func (p *parser) format() error {
	v, ok := p.take("format")
	if !ok {
		return nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		switch s {
		case "":
			return nil
		case "json":
			p.out["response_format"] = map[string]string{"type": "json_object"}
			return nil
		}
		return fmt.Errorf("format must be \"json\" or a JSON schema, not %q", s)
	}
	if !isObject(v) {
		return errors.New("format must be \"json\" or a JSON schema object")
	}
	p.out["response_format"] = map[string]any{
		"type":        "json_schema",
		"json_schema": map[string]any{"name": "schema", "schema": v},
	}
	return nil
}

// think maps Ollama's think to the switches OpenAI-compatible backends know:
// chat_template_kwargs.enable_thinking (Qwen3-style templates, llama-server
// and vLLM both pass it to the template) and reasoning_effort.
func (p *parser) think() error {
	v, ok := p.take("think")
	if !ok {
		return nil
	}
	var b bool
	if json.Unmarshal(v, &b) == nil {
		p.out["chat_template_kwargs"] = map[string]bool{"enable_thinking": b}
		return nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		switch s {
		case "low", "medium", "high":
		case "max":
			s = "high"
		default:
			return fmt.Errorf("think must be true, false, \"low\", \"medium\" or \"high\", not %q", s)
		}
		p.out["chat_template_kwargs"] = map[string]bool{"enable_thinking": true}
		p.out["reasoning_effort"] = s
		return nil
	}
	return errors.New("think must be true, false, \"low\", \"medium\" or \"high\"")
}

// options maps Ollama's options.
func (p *parser) options() error {
	v, ok := p.take("options")
	if !ok {
		return nil
	}
	var opts map[string]json.RawMessage
	if err := json.Unmarshal(v, &opts); err != nil || opts == nil {
		return errors.New("options must be an object")
	}
	for name, v := range opts {
		if isNull(v) {
			continue
		}
		switch name {
		case "temperature", "top_p", "frequency_penalty", "presence_penalty",
			"min_p", "typical_p", "repeat_penalty":
			if !isNumber(v) {
				return fmt.Errorf("options.%s must be a number", name)
			}
			p.out[name] = v
		case "seed", "top_k", "repeat_last_n":
			n, err := integer(v)
			if err != nil {
				return fmt.Errorf("options.%s %w", name, err)
			}
			p.out[name] = n
		case "num_predict":
			n, err := integer(v)
			if err != nil {
				return fmt.Errorf("options.num_predict %w", err)
			}
			// Negative is Ollama's "no limit" (-1) or "fill the context"
			// (-2): OpenAI says that by leaving max_tokens out.
			if n >= 0 {
				p.out["max_tokens"] = n
			}
		case "stop":
			var list []string
			var s string
			switch {
			case json.Unmarshal(v, &list) == nil:
				if len(list) > 0 {
					p.out["stop"] = list
				}
			case json.Unmarshal(v, &s) == nil:
				p.out["stop"] = []string{s}
			default:
				return errors.New("options.stop must be an array of strings")
			}
		default:
			p.ignore("options." + name)
		}
	}
	return nil
}

// integer reads a JSON number that must be whole; 1.0 is taken, as
// JavaScript clients send numbers so.
func integer(v json.RawMessage) (int64, error) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, errors.New("must be a number")
	}
	if f != math.Trunc(f) || f > math.MaxInt64 || f < math.MinInt64 {
		return 0, errors.New("must be a whole number")
	}
	return int64(f), nil
}

// message is one of Ollama's chat messages.
type message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking"`
	Images     []string   `json:"images"`
	ToolCalls  []toolCall `json:"tool_calls"`
	ToolName   string     `json:"tool_name"`
	ToolCallID string     `json:"tool_call_id"`
}

// toolCall is one of Ollama's tool calls: arguments are an object.
type toolCall struct {
	ID       string `json:"id"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// chatMessage is one OpenAI chat message.
type chatMessage struct {
	Role       string           `json:"role"`
	Content    any              `json:"content"`
	ToolCalls  []openAIToolCall `json:"tool_calls,omitempty"`
	ToolCallID string           `json:"tool_call_id,omitempty"`
}

type openAIToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// pendingCall is a call of an assistant message not answered yet by a tool
// message.
type pendingCall struct{ id, name string }

// chatMessages translates a conversation.
func chatMessages(msgs []message) ([]chatMessage, error) {
	out := make([]chatMessage, 0, len(msgs))
	var pending []pendingCall
	n := 0 // the next generated call id
	for i, m := range msgs {
		if m.Role == "" {
			return nil, fmt.Errorf("messages[%d]: role is required", i)
		}
		c, err := content(m.Content, m.Images)
		if err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		cm := chatMessage{Role: m.Role, Content: c}
		if len(m.ToolCalls) > 0 {
			pending = pending[:0]
			for j, tc := range m.ToolCalls {
				oc := openAIToolCall{ID: tc.ID, Type: "function"}
				if oc.ID == "" {
					oc.ID = "call_" + strconv.Itoa(n)
					n++
				}
				oc.Function.Name = tc.Function.Name
				args, err := argumentsText(tc.Function.Arguments)
				if err != nil {
					return nil, fmt.Errorf("messages[%d].tool_calls[%d]: %w", i, j, err)
				}
				oc.Function.Arguments = args
				cm.ToolCalls = append(cm.ToolCalls, oc)
				pending = append(pending, pendingCall{oc.ID, oc.Function.Name})
			}
		}
		if m.Role == "tool" {
			cm.ToolCallID = m.ToolCallID
			if cm.ToolCallID == "" {
				cm.ToolCallID, pending = answer(pending, m.ToolName)
			}
		}
		out = append(out, cm)
	}
	return out, nil
}

// answer finds the call a tool message answers: the first pending one of
// its name, else the first pending one; and takes it off the list.
func answer(pending []pendingCall, name string) (string, []pendingCall) {
	at := -1
	for i, c := range pending {
		if c.name == name {
			at = i
			break
		}
	}
	if at < 0 && len(pending) > 0 {
		at = 0
	}
	if at < 0 {
		return "", pending
	}
	id := pending[at].id
	return id, append(pending[:at], pending[at+1:]...)
}

// argumentsText turns Ollama's arguments (an object) into OpenAI's (a JSON
// string). A string is taken as already encoded, as some clients send it.
func argumentsText(v json.RawMessage) (string, error) {
	if len(v) == 0 || isNull(v) {
		return "{}", nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, nil
	}
	if !isObject(v) {
		return "", errors.New("arguments must be an object")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return "", fmt.Errorf("arguments: %w", err)
	}
	return b.String(), nil
}

// contentPart is one part of an OpenAI message's content.
type contentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
}

type imageURL struct {
	URL string `json:"url"`
}

// content is a message's OpenAI content: the text alone, or with images,
// parts.
func content(text string, images []string) (any, error) {
	if len(images) == 0 {
		return text, nil
	}
	parts := make([]contentPart, 0, len(images)+1)
	if text != "" {
		parts = append(parts, contentPart{Type: "text", Text: text})
	}
	for i, img := range images {
		url, err := dataURL(img)
		if err != nil {
			return nil, fmt.Errorf("images[%d]: %w", i, err)
		}
		parts = append(parts, contentPart{Type: "image_url", ImageURL: &imageURL{URL: url}})
	}
	return parts, nil
}

// dataURL wraps a base64 image in a data: URL, its mime type sniffed from
// its first bytes; jpeg when unknown, as backends decode by content anyway.
func dataURL(b64 string) (string, error) {
	if strings.HasPrefix(b64, "data:") {
		return b64, nil
	}
	if b64 == "" {
		return "", errors.New("empty image")
	}
	// 16 base64 characters are 12 bytes: enough for every magic below.
	head := b64
	if len(head) > 16 {
		head = head[:16]
	}
	head = strings.TrimRight(head, "=")
	if len(head)%4 == 1 { // a lone character is no whole byte
		head = head[:len(head)-1]
	}
	magic, err := base64.RawStdEncoding.DecodeString(head)
	if err != nil {
		return "", errors.New("not base64")
	}
	return "data:" + sniff(magic) + ";base64," + b64, nil
}

// sniff names an image's type from its magic bytes.
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG")):
		return "image/png"
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		return "image/jpeg"
	case bytes.HasPrefix(b, []byte("GIF8")):
		return "image/gif"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	return "image/jpeg"
}

// typeError words a decoding error of a nested field for the client, who
// knows the field's JSON name, not the Go type it was decoded into.
func typeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%s must not be a %s", te.Field, te.Value)
	}
	return err
}

func isNull(v json.RawMessage) bool {
	return string(bytes.TrimSpace(v)) == "null"
}

func firstByte(v json.RawMessage) byte {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

func isObject(v json.RawMessage) bool { return firstByte(v) == '{' }
func isArray(v json.RawMessage) bool  { return firstByte(v) == '[' }

func isEmptyArray(v json.RawMessage) bool {
	var a []json.RawMessage
	return json.Unmarshal(v, &a) == nil && len(a) == 0
}

func isNumber(v json.RawMessage) bool {
	c := firstByte(v)
	return c == '-' || (c >= '0' && c <= '9')
}

// marshal encodes v as JSON without escaping <, > and &, so that prompts
// reach the backend as the client wrote them.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
