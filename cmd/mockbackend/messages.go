package main

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// The Anthropic Messages API (POST /v1/messages and
// /v1/messages/count_tokens), which llama.cpp and vLLM serve for
// Anthropic-style clients and coding agents.

type messagesRequest struct {
	Model     string          `json:"model"`
	MaxTokens int             `json:"max_tokens"`
	System    json.RawMessage `json:"system"` // a string or text blocks
	Stream    bool            `json:"stream"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"` // a string or content blocks
	} `json:"messages"`
}

// input returns the last message's text and the word count of all input.
func (req *messagesRequest) input() (last string, tokens int) {
	tokens = words(text(req.System))
	for _, msg := range req.Messages {
		last = text(msg.Content)
		tokens += words(last)
	}
	return last, tokens
}

type anthropicMessage struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []anthropicBlock `json:"content"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        anthropicUsage   `json:"usage"`
}

type anthropicBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type anthropicUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// decodeMessages reads a Messages request, or answers 400.
func decodeMessages(w http.ResponseWriter, r *http.Request) (*messagesRequest, bool) {
	var req messagesRequest
	if !decode(w, r, &req) {
		return nil, false
	}
	if len(req.Messages) == 0 {
		badRequest(w, "missing_messages", "messages: at least one message is required")
		return nil, false
	}
	return &req, true
}

func (m *mock) messages(w http.ResponseWriter, r *http.Request, c *call) {
	req, ok := decodeMessages(w, r)
	if !ok {
		return
	}
	n := m.tokenCount(req.MaxTokens)
	echo, in := req.input()
	stop := "end_turn"
	if n < m.opts.tokens {
		stop = "max_tokens"
	}
	msg := anthropicMessage{
		ID:      fmt.Sprintf("msg_mock_%d", c.n),
		Type:    "message",
		Role:    "assistant",
		Model:   req.Model,
		Content: []anthropicBlock{},
		Usage:   anthropicUsage{InputTokens: in},
	}
	if !req.Stream {
		msg.Content = append(msg.Content, anthropicBlock{Type: "text", Text: answer(n, echo)})
		msg.StopReason = &stop
		msg.Usage.OutputTokens = n
		writeJSON(w, http.StatusOK, msg)
		return
	}
	event := func(s *eventStream, typ string, fields map[string]any) bool {
		fields["type"] = typ
		return s.sendJSON(typ, fields)
	}
	m.streamTokens(w, r, c, n, func(s *eventStream) bool {
		return event(s, "message_start", map[string]any{"message": msg}) &&
			event(s, "content_block_start", map[string]any{"index": 0, "content_block": anthropicBlock{Type: "text"}}) &&
			event(s, "ping", map[string]any{})
	}, func(s *eventStream, i int) bool {
		return event(s, "content_block_delta", map[string]any{"index": 0,
			"delta": map[string]string{"type": "text_delta", "text": token(i)}})
	}, func(s *eventStream) bool {
		return event(s, "content_block_stop", map[string]any{"index": 0}) &&
			event(s, "message_delta", map[string]any{
				"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
				"usage": map[string]int{"output_tokens": n}}) &&
			event(s, "message_stop", map[string]any{})
	})
}

// countTokens answers POST /v1/messages/count_tokens.
func (m *mock) countTokens(w http.ResponseWriter, r *http.Request, c *call) {
	req, ok := decodeMessages(w, r)
	if !ok {
		return
	}
	_, in := req.input()
	writeJSON(w, http.StatusOK, map[string]int{"input_tokens": in})
}
