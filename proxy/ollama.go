package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// isOllama reports whether path is one of Ollama's API paths, whose
// answers and errors are in Ollama's shapes.
func isOllama(path []byte) bool { return bytes.HasPrefix(path, []byte("/api/")) }

// handleOllama serves Ollama's API (see package ollama).
func (s *Server) handleOllama(ctx *fasthttp.RequestCtx, path string) {
	s.fail(ctx, "", unknownPath(path))
}
