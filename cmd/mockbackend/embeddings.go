package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"sort"
)

// rerankDim is the size of the vectors rerank compares; it is not -dim,
// so that scores do not change with the embedding size.
const rerankDim = 64

// vector is a deterministic unit-length embedding of s: the same text
// always gets the same vector, and different texts almost surely differ.
func vector(s string, dim int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(s)) //nolint:errcheck // a hash never fails to write
	state := h.Sum64()
	v := make([]float32, dim)
	var norm float64
	for i := range v {
		// splitmix64: a tiny, well-mixed generator seeded by the text.
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		x := float64(z>>11)/(1<<53)*2 - 1 // in [-1, 1)
		v[i] = float32(x)
		norm += x * x
	}
	if norm > 0 {
		for i := range v {
			v[i] = float32(float64(v[i]) / math.Sqrt(norm))
		}
	}
	return v
}

// embeddings answers POST /v1/embeddings: one -dim vector per input, as
// a float array, or as base64 little-endian float32s when encoding_format
// is "base64" (which OpenAI's Python client asks for by default).
func (m *mock) embeddings(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
	}
	if !decode(w, r, &req) {
		return
	}
	var inputs []string
	var one string
	if json.Unmarshal(req.Input, &one) == nil {
		inputs = []string{one}
	} else if json.Unmarshal(req.Input, &inputs) != nil || len(inputs) == 0 {
		badRequest(w, "invalid_input", "input must be a string or a non-empty array of strings")
		return
	}

	data := make([]map[string]any, len(inputs))
	tokens := 0
	for i, in := range inputs {
		tokens += words(in)
		v := vector(in, m.opts.dim)
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": v}
		if req.EncodingFormat == "base64" {
			data[i]["embedding"] = float32sBase64(v)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list",
		"data":   data,
		"model":  req.Model,
		"usage":  map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}

// float32sBase64 is OpenAI's base64 encoding of an embedding.
func float32sBase64(v []float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// rerank answers POST /v1/rerank (the Cohere/Jina shape that llama.cpp and
// vLLM serve): documents scored against the query, best first. The score
// is the cosine of their mock vectors mapped to [0, 1], so a document equal
// to the query scores 1.
func (m *mock) rerank(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Model           string            `json:"model"`
		Query           string            `json:"query"`
		Documents       []json.RawMessage `json:"documents"` // strings or {"text": ...}
		TopN            int               `json:"top_n"`
		ReturnDocuments bool              `json:"return_documents"`
	}
	if !decode(w, r, &req) {
		return
	}
	type result struct {
		Index    int               `json:"index"`
		Score    float64           `json:"relevance_score"`
		Document map[string]string `json:"document,omitempty"`
	}
	q := vector(req.Query, rerankDim)
	results := make([]result, len(req.Documents))
	tokens := words(req.Query)
	for i, raw := range req.Documents {
		doc := text(raw)
		tokens += words(doc)
		var cos float64
		for j, x := range vector(doc, rerankDim) {
			cos += float64(x) * float64(q[j])
		}
		results[i] = result{Index: i, Score: (cos + 1) / 2}
		if req.ReturnDocuments {
			results[i].Document = map[string]string{"text": doc}
		}
	}
	sort.SliceStable(results, func(i, j int) bool { return results[i].Score > results[j].Score })
	if req.TopN > 0 && req.TopN < len(results) {
		results = results[:req.TopN]
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model":   req.Model,
		"results": results,
		"usage":   map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}
