package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// The OpenAI Responses API (POST /v1/responses), which the official SDKs
// now lead with and llama.cpp and vLLM serve: the same deterministic
// answer as a chat completion, in its shapes.

type responsesRequest struct {
	Model           string          `json:"model"`
	Input           json.RawMessage `json:"input"` // a string, or a list of items
	Instructions    string          `json:"instructions"`
	Stream          bool            `json:"stream"`
	MaxOutputTokens int             `json:"max_output_tokens"`
}

// responseObject is a response, whole or as the stream's events carry it.
type responseObject struct {
	ID        string           `json:"id"`
	Object    string           `json:"object"`
	CreatedAt int64            `json:"created_at"`
	Status    string           `json:"status"`
	Model     string           `json:"model"`
	Output    []responseOutput `json:"output"`
	Usage     *responseUsage   `json:"usage"`
}

type responseOutput struct {
	Type    string         `json:"type"`
	ID      string         `json:"id"`
	Status  string         `json:"status"`
	Role    string         `json:"role"`
	Content []responsePart `json:"content"`
}

type responsePart struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

type responseUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// lastInput is the text a Responses request ends with: its input when a
// string, else the content of its last item.
func lastInput(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var items []struct {
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &items) != nil || len(items) == 0 {
		return ""
	}
	return text(items[len(items)-1].Content)
}

func (m *mock) responses(w http.ResponseWriter, r *http.Request, c *call) {
	var req responsesRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Input) == 0 {
		badRequest(w, "missing_input", "input is required")
		return
	}
	n := m.tokenCount(req.MaxOutputTokens)
	echo := lastInput(req.Input)
	in := words(req.Instructions) + words(echo)
	resp := responseObject{
		ID:        fmt.Sprintf("resp_mock_%d", c.n),
		Object:    "response",
		CreatedAt: time.Now().Unix(),
		Status:    "completed",
		Model:     req.Model,
		Output:    []responseOutput{},
	}
	item := responseOutput{Type: "message", ID: fmt.Sprintf("msg_mock_%d", c.n), Status: "completed",
		Role: "assistant", Content: []responsePart{}}
	if !req.Stream {
		item.Content = append(item.Content, responsePart{Type: "output_text", Text: answer(n, echo), Annotations: []any{}})
		resp.Output = append(resp.Output, item)
		resp.Usage = &responseUsage{InputTokens: in, OutputTokens: n, TotalTokens: in + n}
		writeJSON(w, http.StatusOK, resp)
		return
	}

	// Every event names its type twice, in the SSE event line and in the
	// data, and counts itself.
	seq := 0
	event := func(s *eventStream, typ string, fields map[string]any) bool {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		return s.sendJSON(typ, fields)
	}
	at := func(fields map[string]any) map[string]any {
		fields["item_id"], fields["output_index"], fields["content_index"] = item.ID, 0, 0
		return fields
	}
	var full string
	m.streamTokens(w, r, c, n, func(s *eventStream) bool {
		resp.Status = "in_progress"
		inProgress := item
		inProgress.Status = "in_progress"
		return event(s, "response.created", map[string]any{"response": resp}) &&
			event(s, "response.in_progress", map[string]any{"response": resp}) &&
			event(s, "response.output_item.added", map[string]any{"output_index": 0, "item": inProgress}) &&
			event(s, "response.content_part.added", at(map[string]any{
				"part": responsePart{Type: "output_text", Annotations: []any{}}}))
	}, func(s *eventStream, i int) bool {
		full += token(i)
		return event(s, "response.output_text.delta", at(map[string]any{"delta": token(i)}))
	}, func(s *eventStream) bool {
		part := responsePart{Type: "output_text", Text: full, Annotations: []any{}}
		item.Content = append(item.Content, part)
		resp.Status = "completed"
		resp.Output = append(resp.Output, item)
		resp.Usage = &responseUsage{InputTokens: in, OutputTokens: n, TotalTokens: in + n}
		return event(s, "response.output_text.done", at(map[string]any{"text": full})) &&
			event(s, "response.content_part.done", at(map[string]any{"part": part})) &&
			event(s, "response.output_item.done", map[string]any{"output_index": 0, "item": item}) &&
			event(s, "response.completed", map[string]any{"response": resp})
	})
}
