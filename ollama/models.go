package ollama

import (
	"strings"
	"time"
)

// version is the Ollama version hotswap says it speaks. 0.13.0 (November
// 2025) is a release whose API is the one this package translates (think
// levels, tool call ids, /api/embed's dimensions), and is above the
// minimums clients check (VS Code's Copilot asks for 0.6.4 or later;
// ollama-js and Open WebUI check none and only show it). A newer number
// would promise endpoints and fields this package does not serve.
const version = "0.13.0"

// ModelInfo is what hotswap knows of one model, for the listing endpoints.
type ModelInfo struct {
	Name          string    // the name clients use (a model id, an alias or a variant)
	ModifiedAt    time.Time // zero: written as Ollama writes a zero time
	Size          int64     // bytes: learned or declared footprint, RAM+VRAM
	SizeVRAM      int64
	Digest        string // stable per model; the caller gives e.g. a sha256 of its id and cmd
	Family        string // from metadata when given
	ParameterSize string // from metadata when given
	Quantization  string // from metadata when given
	Format        string // "gguf" when known, else ""
	ContextLength int    // from metadata when given
	// ExpiresAt is, for /api/ps, when the model unloads if left idle; zero:
	// never, written as a far-future time as Ollama does for keep_alive -1.
	ExpiresAt time.Time
	// Capabilities are hotswap's capability words: text, image, audio,
	// embeddings, tools (and thinking); see ollamaCapabilities.
	Capabilities []string
	Description  string
	Parameters   string // optional text for /api/show's "parameters"
}

// never is the expires_at of a model kept loaded. Ollama writes now plus the
// largest duration (about 292 years on); without a clock here, a fixed date
// as far off says the same.
func never() time.Time { return time.Date(2318, time.January, 1, 0, 0, 0, 0, time.UTC) }

// details is Ollama's model details object.
type details struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

func detailsOf(m ModelInfo) details {
	d := details{
		Format:            m.Format,
		Family:            m.Family,
		ParameterSize:     m.ParameterSize,
		QuantizationLevel: m.Quantization,
	}
	if m.Family != "" {
		d.Families = []string{m.Family}
	}
	return d
}

// Tags is /api/tags: {"models":[...]} with name, model, modified_at, size,
// digest, details{parent_model,format,family,families,parameter_size,
// quantization_level} and capabilities (as newer Ollama lists them).
func Tags(models []ModelInfo) []byte {
	type entry struct {
		Name         string    `json:"name"`
		Model        string    `json:"model"`
		ModifiedAt   time.Time `json:"modified_at"`
		Size         int64     `json:"size"`
		Digest       string    `json:"digest"`
		Details      details   `json:"details"`
		Capabilities []string  `json:"capabilities,omitempty"`
	}
	list := make([]entry, 0, len(models))
	for _, m := range models {
		list = append(list, entry{
			Name:         m.Name,
			Model:        m.Name,
			ModifiedAt:   m.ModifiedAt,
			Size:         m.Size,
			Digest:       m.Digest,
			Details:      detailsOf(m),
			Capabilities: ollamaCapabilities(m.Capabilities),
		})
	}
	return mustMarshal(map[string]any{"models": list})
}

// PS is /api/ps: {"models":[...]} with name, model, size, digest, details,
// expires_at, size_vram, context_length.
func PS(models []ModelInfo) []byte {
	type entry struct {
		Name          string    `json:"name"`
		Model         string    `json:"model"`
		Size          int64     `json:"size"`
		Digest        string    `json:"digest"`
		Details       details   `json:"details"`
		ExpiresAt     time.Time `json:"expires_at"`
		SizeVRAM      int64     `json:"size_vram"`
		ContextLength int       `json:"context_length"`
	}
	list := make([]entry, 0, len(models))
	for _, m := range models {
		exp := m.ExpiresAt
		if exp.IsZero() {
			exp = never()
		}
		list = append(list, entry{
			Name:          m.Name,
			Model:         m.Name,
			Size:          m.Size,
			Digest:        m.Digest,
			Details:       detailsOf(m),
			ExpiresAt:     exp,
			SizeVRAM:      m.SizeVRAM,
			ContextLength: m.ContextLength,
		})
	}
	return mustMarshal(map[string]any{"models": list})
}

// Show is /api/show: modelfile (a comment with the description, and FROM
// the name: hotswap has no Modelfile), parameters, template (empty: the
// backend applies its own), details, model_info (general.architecture, and
// FAMILY.context_length, the key clients such as Open WebUI read the
// context length from; general.context_length when the family is unknown),
// capabilities and modified_at.
func Show(m ModelInfo) []byte {
	var mf strings.Builder
	mf.WriteString("# Served by hotswap.\n")
	for _, l := range strings.Split(strings.TrimSpace(m.Description), "\n") {
		if l != "" {
			mf.WriteString("# " + l + "\n")
		}
	}
	mf.WriteString("FROM " + m.Name + "\n")
	for _, l := range strings.Split(strings.TrimSpace(m.Parameters), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			mf.WriteString("PARAMETER " + l + "\n")
		}
	}

	info := map[string]any{}
	arch := m.Family
	if arch != "" {
		info["general.architecture"] = arch
	} else {
		arch = "general"
	}
	if m.ContextLength > 0 {
		info[arch+".context_length"] = m.ContextLength
	}
	if m.Description != "" {
		info["general.description"] = m.Description
	}
	caps := ollamaCapabilities(m.Capabilities)
	if caps == nil {
		caps = []string{}
	}
	return mustMarshal(map[string]any{
		"modelfile":    mf.String(),
		"parameters":   m.Parameters,
		"template":     "",
		"details":      detailsOf(m),
		"model_info":   info,
		"capabilities": caps,
		"modified_at":  m.ModifiedAt,
	})
}

// Version is /api/version: {"version":"0.13.0"}; see version for why.
func Version() []byte {
	return []byte(`{"version":"` + version + `"}`)
}

// ollamaCapabilities maps hotswap's capability words to Ollama's: text →
// completion, image → vision (hotswap's image is an image input; Ollama's
// "image" would mean image generation), embeddings → embedding, tools,
// audio and thinking (or reasoning) as they are. Ollama's own words
// (completion, vision, embedding, insert) pass as they are; others are
// left out. A model that declares none is a text model: completion.
func ollamaCapabilities(words []string) []string {
	if len(words) == 0 {
		return []string{"completion"}
	}
	var out []string
	for _, w := range words {
		var c string
		switch strings.ToLower(strings.TrimSpace(w)) {
		case "text", "completion", "chat":
			c = "completion"
		case "image", "vision":
			c = "vision"
		case "embeddings", "embedding":
			c = "embedding"
		case "tools":
			c = "tools"
		case "audio":
			c = "audio"
		case "thinking", "reasoning":
			c = "thinking"
		case "insert":
			c = "insert"
		default:
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == c
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}

// mustMarshal encodes the listings, whose values always encode.
func mustMarshal(v any) []byte {
	b, err := marshal(v)
	if err != nil {
		return ErrorBody("encoding: " + err.Error())
	}
	return b
}
