package main

import (
	"encoding/json"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
)

// llama.cpp's own endpoints, which its clients (and its web UI) use beside
// the OpenAI ones: /completion and /infill, /tokenize, /detokenize,
// /apply-template and /props, in llama-server's shapes. /embedding,
// /reranking and /rerank answer as /v1/embeddings and /v1/rerank do.

// vocabSize bounds the mock's token ids.
const vocabSize = 32000

// tokenID is the mock's id for a word: stable, so that tokenizing the
// same text twice gives the same ids.
func tokenID(word string) int {
	h := fnv.New32a()
	h.Write([]byte(word)) //nolint:errcheck // a hash never fails to write
	return int(h.Sum32() % vocabSize)
}

// llamaCompletion answers POST /completion (and /infill): the content, and
// when streamed one "data:" event per token, the last with "stop": true and
// no "[DONE]" after it.
func (m *mock) llamaCompletion(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Prompt   json.RawMessage `json:"prompt"`
		NPredict int             `json:"n_predict"`
		Stream   bool            `json:"stream"`
	}
	if !decode(w, r, &req) {
		return
	}
	n := m.tokenCount(req.NPredict)
	prompt := text(req.Prompt)
	final := map[string]any{"content": "", "stop": true, "stop_type": "eos", "model": m.opts.model,
		"tokens_predicted": n, "tokens_evaluated": words(prompt)}
	if !req.Stream {
		final["content"] = answer(n, prompt)
		writeJSON(w, http.StatusOK, final)
		return
	}
	m.streamTokens(w, r, c, n, nil, func(s *eventStream, i int) bool {
		return s.sendJSON("", map[string]any{"content": token(i), "stop": false})
	}, func(s *eventStream) bool {
		return s.sendJSON("", final)
	})
}

// tokenize answers POST /tokenize: a token id per word of "content".
func (m *mock) tokenize(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Content string `json:"content"`
	}
	if !decode(w, r, &req) {
		return
	}
	tokens := []int{}
	for _, word := range strings.Fields(req.Content) {
		tokens = append(tokens, tokenID(word))
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": tokens})
}

// detokenize answers POST /detokenize. Ids do not map back to words in
// the mock: each id reads as "t<id>".
func (m *mock) detokenize(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Tokens []int `json:"tokens"`
	}
	if !decode(w, r, &req) {
		return
	}
	words := make([]string, len(req.Tokens))
	for i, t := range req.Tokens {
		words[i] = "t" + strconv.Itoa(t)
	}
	writeJSON(w, http.StatusOK, map[string]string{"content": strings.Join(words, " ")})
}

// applyTemplate answers POST /apply-template as llama-server does: the
// chat's messages formatted by the model's chat template (ChatML in the
// mock) into the one prompt the model would be given, ending where the
// assistant's answer begins. Nothing is generated.
func (m *mock) applyTemplate(w http.ResponseWriter, r *http.Request, c *call) {
	var req completionRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Messages) == 0 {
		badRequest(w, "missing_messages", "messages: at least one message is required")
		return
	}
	var prompt strings.Builder
	for _, msg := range req.Messages {
		prompt.WriteString("<|im_start|>" + msg.Role + "\n" + text(msg.Content) + "<|im_end|>\n")
	}
	prompt.WriteString("<|im_start|>assistant\n")
	writeJSON(w, http.StatusOK, map[string]string{"prompt": prompt.String()})
}

// props answers GET /props with the few settings clients look at.
func (m *mock) props(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"model_alias":                 m.opts.model,
		"model_path":                  "/models/" + m.opts.model + ".gguf",
		"total_slots":                 1,
		"default_generation_settings": map[string]any{"n_ctx": 4096},
	})
}
