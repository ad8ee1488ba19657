package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// completionRequest holds the fields of chat and text completion requests
// that the mock looks at.
type completionRequest struct {
	Model               string          `json:"model"`
	Stream              bool            `json:"stream"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"` // newer name of max_tokens
	Prompt              json.RawMessage `json:"prompt"`
	Messages            []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	StreamOptions struct {
		// IncludeUsage asks a stream for a last chunk, before [DONE],
		// with no choices and the whole answer's usage.
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// choice is one choice of a completion, chunk or not, chat or text; the
// fields that do not apply are left out.
type choice struct {
	Index        int      `json:"index"`
	Message      *message `json:"message,omitempty"`
	Delta        *message `json:"delta,omitempty"`
	Text         *string  `json:"text,omitempty"`
	FinishReason *string  `json:"finish_reason"` // null until the end
}

type message struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content,omitempty"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
}

// completionKind is what differs between chat and text completions.
type completionKind struct {
	chat        bool
	idPrefix    string
	object      string // of the whole answer
	chunkObject string // of each streamed chunk
}

func (m *mock) chatCompletions(w http.ResponseWriter, r *http.Request, c *call) {
	m.complete(w, r, c, completionKind{chat: true, idPrefix: "chatcmpl-mock-",
		object: "chat.completion", chunkObject: "chat.completion.chunk"})
}

func (m *mock) textCompletions(w http.ResponseWriter, r *http.Request, c *call) {
	m.complete(w, r, c, completionKind{idPrefix: "cmpl-mock-",
		object: "text_completion", chunkObject: "text_completion"})
}

// complete answers a chat or text completion. The answer is deterministic:
// -tokens tokens "tok0 ", "tok1 ", ... (fewer if max_tokens says so), then,
// when not streamed, "| echo: " and the last message or the prompt. The
// model field echoes the request's, so tests can see the body arrived
// unchanged.
//
// A stream whose request sets stream_options.include_usage ends, as
// OpenAI's does, with one more chunk before [DONE]: no choices, and the
// usage a whole answer would have. Without stream, stream_options is
// ignored.
func (m *mock) complete(w http.ResponseWriter, r *http.Request, c *call, kind completionKind) {
	var req completionRequest
	if !decode(w, r, &req) {
		return
	}
	n := m.tokenCount(req.MaxTokens, req.MaxCompletionTokens)
	// echo is the last message (or the prompt); prompt is all of the
	// input, for the usage counts.
	var echo, prompt string
	if kind.chat {
		for _, msg := range req.Messages {
			echo = text(msg.Content)
			prompt += echo + " "
		}
	} else {
		echo = text(req.Prompt)
		prompt = echo
	}
	head := completion{
		ID:      fmt.Sprintf("%s%d", kind.idPrefix, c.n),
		Object:  kind.object,
		Created: time.Now().Unix(),
		Model:   req.Model,
	}
	u := &usage{PromptTokens: words(prompt), CompletionTokens: n, TotalTokens: words(prompt) + n}
	if req.Stream {
		if !req.StreamOptions.IncludeUsage {
			u = nil
		}
		m.stream(w, r, c, kind, head, n, u)
		return
	}

	ch := choice{FinishReason: ptr("stop")}
	if kind.chat {
		ch.Message = &message{Role: "assistant", Content: answer(n, echo)}
	} else {
		ch.Text = ptr(answer(n, echo))
	}
	head.Choices = []choice{ch}
	head.Usage = u
	m.sent(n)
	writeJSON(w, http.StatusOK, head)
}

// stream answers as server-sent events, one chunk per token, each flushed
// as soon as it is written and counted in the stats once sent, then the
// finishing chunk, then a usage chunk if u is not nil, then
// "data: [DONE]". It stops as soon as the client leaves.
func (m *mock) stream(w http.ResponseWriter, r *http.Request, c *call, kind completionKind, head completion, n int, u *usage) {
	chunk := func(s *eventStream, ch choice) bool {
		head.Object = kind.chunkObject
		head.Choices = []choice{ch}
		return s.sendJSON("", head)
	}
	var start func(*eventStream) bool
	if kind.chat {
		start = func(s *eventStream) bool { return chunk(s, choice{Delta: &message{Role: "assistant"}}) }
	}
	m.streamTokens(w, r, c, n, start, func(s *eventStream, i int) bool {
		ch := choice{Text: ptr(token(i))}
		if kind.chat {
			ch = choice{Delta: &message{Content: token(i)}}
		}
		if !chunk(s, ch) {
			return false
		}
		m.sent(1)
		return true
	}, func(s *eventStream) bool {
		last := choice{Delta: &message{}, FinishReason: ptr("stop")}
		if !kind.chat {
			last = choice{Text: ptr(""), FinishReason: ptr("stop")}
		}
		if !chunk(s, last) {
			return false
		}
		if u != nil {
			head.Choices = []choice{}
			head.Usage = u
			if !s.sendJSON("", head) {
				return false
			}
		}
		return s.send("", []byte("[DONE]"))
	})
}

// tokenCount is how many tokens an answer has: -tokens, or fewer if one
// of the request's limits (those > 0) says so.
func (m *mock) tokenCount(limits ...int) int {
	n := m.opts.tokens
	for _, limit := range limits {
		if limit > 0 {
			n = min(n, limit)
		}
	}
	return n
}

// answer is a whole answer of n tokens, in every API: the tokens, then
// "| echo: " and the input it answers, so tests can see the body arrived
// unchanged. Streams send the tokens only.
func answer(n int, echo string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(token(i))
	}
	b.WriteString("| echo: " + echo)
	return b.String()
}

// token is the i-th token of every answer.
func token(i int) string {
	return fmt.Sprintf("tok%d ", i)
}

func ptr[T any](v T) *T { return &v }
