package ollama

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func testModels() []ModelInfo {
	mod := time.Date(2025, 3, 4, 5, 6, 7, 800, time.UTC)
	return []ModelInfo{
		{Name: "qwen3:8b", ModifiedAt: mod, Size: 6 << 30, SizeVRAM: 5 << 30, Digest: "abc123",
			Family: "qwen3", ParameterSize: "8.2B", Quantization: "Q4_K_M", Format: "gguf", ContextLength: 32768,
			ExpiresAt:    time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC),
			Capabilities: []string{"text", "tools", "thinking", "image", "text"},
			Description:  "Qwen3 8B\nfor chat", Parameters: "temperature 0.6\ntop_k 20"},
		{Name: "embed", Digest: "def456", Capabilities: []string{"embeddings"}},
		{Name: "plain"},
	}
}

func TestTags(t *testing.T) {
	want := `{"models":[` +
		`{"name":"qwen3:8b","model":"qwen3:8b","modified_at":"2025-03-04T05:06:07.0000008Z","size":6442450944,"digest":"abc123",` +
		`"details":{"parent_model":"","format":"gguf","family":"qwen3","families":["qwen3"],"parameter_size":"8.2B","quantization_level":"Q4_K_M"},` +
		`"capabilities":["completion","tools","thinking","vision"]},` +
		`{"name":"embed","model":"embed","modified_at":"0001-01-01T00:00:00Z","size":0,"digest":"def456",` +
		`"details":{"parent_model":"","format":"","family":"","families":null,"parameter_size":"","quantization_level":""},` +
		`"capabilities":["embedding"]},` +
		`{"name":"plain","model":"plain","modified_at":"0001-01-01T00:00:00Z","size":0,"digest":"",` +
		`"details":{"parent_model":"","format":"","family":"","families":null,"parameter_size":"","quantization_level":""},` +
		`"capabilities":["completion"]}]}`
	if got := Tags(testModels()); string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := Tags(nil); string(got) != `{"models":[]}` {
		t.Errorf("no models: %s", got)
	}
}

func TestPS(t *testing.T) {
	want := `{"models":[` +
		`{"name":"qwen3:8b","model":"qwen3:8b","size":6442450944,"digest":"abc123",` +
		`"details":{"parent_model":"","format":"gguf","family":"qwen3","families":["qwen3"],"parameter_size":"8.2B","quantization_level":"Q4_K_M"},` +
		`"expires_at":"2025-03-04T06:00:00Z","size_vram":5368709120,"context_length":32768},` +
		`{"name":"embed","model":"embed","size":0,"digest":"def456",` +
		`"details":{"parent_model":"","format":"","family":"","families":null,"parameter_size":"","quantization_level":""},` +
		`"expires_at":"2318-01-01T00:00:00Z","size_vram":0,"context_length":0}]}`
	if got := PS(testModels()[:2]); string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := PS(nil); string(got) != `{"models":[]}` {
		t.Errorf("no models: %s", got)
	}
}

func TestShow(t *testing.T) {
	cases := []struct {
		name string
		m    ModelInfo
		want string
	}{
		{"with metadata", testModels()[0],
			`{"capabilities":["completion","tools","thinking","vision"],` +
				`"details":{"parent_model":"","format":"gguf","family":"qwen3","families":["qwen3"],"parameter_size":"8.2B","quantization_level":"Q4_K_M"},` +
				`"model_info":{"general.architecture":"qwen3","general.description":"Qwen3 8B\nfor chat","qwen3.context_length":32768},` +
				`"modelfile":"# Served by hotswap.\n# Qwen3 8B\n# for chat\nFROM qwen3:8b\nPARAMETER temperature 0.6\nPARAMETER top_k 20\n",` +
				`"modified_at":"2025-03-04T05:06:07.0000008Z","parameters":"temperature 0.6\ntop_k 20","template":""}`},
		{"bare", ModelInfo{Name: "plain", ContextLength: 4096},
			`{"capabilities":["completion"],` +
				`"details":{"parent_model":"","format":"","family":"","families":null,"parameter_size":"","quantization_level":""},` +
				`"model_info":{"general.context_length":4096},` +
				`"modelfile":"# Served by hotswap.\nFROM plain\n","modified_at":"0001-01-01T00:00:00Z","parameters":"","template":""}`},
	}
	for _, c := range cases {
		if got := Show(c.m); string(got) != c.want {
			t.Errorf("%s: got\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

func TestVersion(t *testing.T) {
	var v struct{ Version string }
	if err := json.Unmarshal(Version(), &v); err != nil || v.Version != "0.13.0" {
		t.Errorf("Version() = %s (%v)", Version(), err)
	}
}

func TestOllamaCapabilities(t *testing.T) {
	cases := []struct {
		in, want []string
	}{
		{nil, []string{"completion"}},
		{[]string{"text"}, []string{"completion"}},
		{[]string{"text", "image", "audio", "tools"}, []string{"completion", "vision", "audio", "tools"}},
		{[]string{"embeddings"}, []string{"embedding"}},
		{[]string{"Text", " reasoning "}, []string{"completion", "thinking"}},
		{[]string{"completion", "vision", "embedding", "insert"}, []string{"completion", "vision", "embedding", "insert"}},
		{[]string{"speech", "rerank"}, nil},
	}
	for _, c := range cases {
		if got := ollamaCapabilities(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ollamaCapabilities(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
