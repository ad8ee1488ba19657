package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// isLlamaModels reports whether path is llama.cpp's router API for models:
// GET /models, POST /models/load, POST /models/unload.
func isLlamaModels(path []byte) bool {
	return string(path) == "/models" || bytes.HasPrefix(path, []byte("/models/"))
}

// handleLlamaModels serves llama.cpp's router API for models.
func (s *Server) handleLlamaModels(ctx *fasthttp.RequestCtx, path string) {
	s.fail(ctx, "", unknownPath(path))
}
