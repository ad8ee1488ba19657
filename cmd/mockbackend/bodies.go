package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
)

// What a request brought: with -keep-bodies N, the mock keeps the last N
// bodies of model POSTs as they arrived, and GET /mock/bodies reports
// them, so that tests see what a proxy sent the backend. With
// -served-model-name, it checks the model a request names as vLLM does
// (--served-model-name): another name is refused with vLLM's 404, and
// answers carry the served name.

// keptBody is one body in GET /mock/bodies.
type keptBody struct {
	// N is the request's number among the model POSTs that arrived while
	// ready, counting from 1.
	N           int    `json:"n"`
	Path        string `json:"path"`
	ContentType string `json:"content_type"`
	// Body is the body as it arrived, as text.
	Body string `json:"body"`
}

// bodies is GET /mock/bodies: the kept bodies, oldest first.
func (m *mock) bodies(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	out := slices.Clone(m.kept)
	m.mu.Unlock()
	if out == nil {
		out = []keptBody{}
	}
	writeJSON(w, http.StatusOK, out)
}

// readBody reads a model POST's body and puts it back for its handler.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, err
}

// keep keeps body as the n-th model POST's.
func (m *mock) keep(n int, r *http.Request, body []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kept = append(m.kept, keptBody{N: n, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: string(body)})
	if over := len(m.kept) - m.opts.keepBodies; over > 0 {
		m.kept = slices.Delete(m.kept, 0, over)
	}
}

// servedModel checks the model a body names against -served-model-name,
// as vLLM does: a body that names none is served (vLLM's model is
// optional), one that names another is refused with vLLM's 404. A JSON
// body's model is made the served name, so that answers carry it, as
// vLLM's do. It reports whether the request may go on, and the body to
// serve it with.
func (m *mock) servedModel(w http.ResponseWriter, r *http.Request, body []byte) ([]byte, bool) {
	served := m.opts.served
	name, isJSON := bodyModel(r.Header.Get("Content-Type"), body)
	if name != "" && !slices.Contains(served, name) {
		writeJSON(w, http.StatusNotFound, map[string]any{
			"object": "error", "message": fmt.Sprintf("The model `%s` does not exist.", name),
			"type": "NotFoundError", "param": nil, "code": http.StatusNotFound,
		})
		return nil, false
	}
	if !isJSON {
		return body, true
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return body, true // the handler answers the malformed body
	}
	obj["model"], _ = json.Marshal(served[0])
	b, err := json.Marshal(obj)
	if err != nil {
		return body, true
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return b, true
}

// bodyModel returns the model a JSON body or a multipart form names, and
// whether the body is a JSON object.
func bodyModel(contentType string, body []byte) (string, bool) {
	if mt, params, err := mime.ParseMediaType(contentType); err == nil && mt == "multipart/form-data" {
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err != nil {
				return "", false
			}
			if part.FormName() == "model" {
				v, _ := io.ReadAll(io.LimitReader(part, 1024))
				return strings.TrimSpace(string(v)), false
			}
		}
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return "", false
	}
	var name string
	_ = json.Unmarshal(obj["model"], &name)
	return name, true
}
