package ollama

import "time"

// ModelInfo is what hotswap knows of one model, for the listing endpoints.
type ModelInfo struct {
	Name          string
	ModifiedAt    time.Time
	Size          int64
	SizeVRAM      int64
	Digest        string
	Family        string
	ParameterSize string
	Quantization  string
	Format        string
	ContextLength int
	ExpiresAt     time.Time
	Capabilities  []string
	Description   string
	Parameters    string
}

// Tags is /api/tags.
func Tags(models []ModelInfo) []byte { return nil }

// PS is /api/ps.
func PS(models []ModelInfo) []byte { return nil }

// Show is /api/show.
func Show(m ModelInfo) []byte { return nil }

// Version is /api/version.
func Version() []byte { return nil }
