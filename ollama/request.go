package ollama

import (
	"errors"
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
	Endpoint  Endpoint
	Model     string         // as the client named it
	Path      string         // the backend path: /v1/chat/completions, /v1/completions or /v1/embeddings
	Body      []byte         // the OpenAI request body; its "model" is the client's name
	Stream    bool           // the client reads an NDJSON stream
	KeepAlive *time.Duration // nil when not sent; < 0: keep loaded; 0: unload once answered
	Empty     bool           // no prompt / no messages: Ollama's "load the model" request
	Ignored   []string       // option names with no OpenAI equivalent, for a debug line
}

// Parse reads and translates an Ollama request.
func Parse(ep Endpoint, body []byte) (*Request, error) {
	return nil, errors.New("not implemented")
}
