package readahead

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func touch(t *testing.T, path string, size int) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	j := func(p string) string { return filepath.Join(dir, p) }
	touch(t, j("a.gguf"), 1)
	touch(t, j("b.GGUF"), 1)
	touch(t, j("big-00001-of-00003.gguf"), 1)
	touch(t, j("big-00002-of-00003.gguf"), 1)
	touch(t, j("big-00003-of-00003.gguf"), 1)
	touch(t, j("hf/model-00001-of-00002.safetensors"), 1)
	touch(t, j("hf/model-00002-of-00002.safetensors"), 1)
	touch(t, j("hf/config.json"), 1)
	touch(t, j("hf/sub/deep.safetensors"), 1)
	touch(t, j("w.bin"), 1)
	touch(t, j("w.onnx"), 1)
	touch(t, j("w.pt"), 1)
	touch(t, j("notes.txt"), 1)
	touch(t, j("weights.raw"), 1)
	hf := []string{j("hf/model-00001-of-00002.safetensors"), j("hf/model-00002-of-00002.safetensors")}
	big := []string{j("big-00001-of-00003.gguf"), j("big-00002-of-00003.gguf"), j("big-00003-of-00003.gguf")}

	for _, tc := range []struct {
		name  string
		argv  []string
		files []string
		want  []string
	}{
		{"-m value", []string{"llama-server", "-m", j("a.gguf"), "--port", "8080"}, nil, []string{j("a.gguf")}},
		{"--model value", []string{"llama-server", "--model", j("a.gguf")}, nil, []string{j("a.gguf")}},
		{"--flag=value", []string{"llama-server", "--model=" + j("a.gguf")}, nil, []string{j("a.gguf")}},
		{"positional, any case", []string{"x", j("b.GGUF")}, nil, []string{j("b.GGUF")}},
		{"split from first part", []string{"x", "-m", j("big-00001-of-00003.gguf")}, nil, big},
		{"split from a middle part", []string{"x", "-m", j("big-00002-of-00003.gguf")}, nil, big},
		{"directory, one level", []string{"vllm", "serve", j("hf"), "--port", "1"}, nil, hf},
		{"other endings", []string{"x", j("w.bin"), "--onnx=" + j("w.onnx"), j("w.pt")}, nil,
			[]string{j("w.bin"), j("w.onnx"), j("w.pt")}},
		{"not weights", []string{"x", j("notes.txt"), "--chat-template=" + j("notes.txt")}, nil, nil},
		{"nonexistent ignored", []string{"x", "-m", j("gone.gguf"), "--x=" + j("gone.safetensors"), j("a.gguf")}, nil,
			[]string{j("a.gguf")}},
		{"each once", []string{"x", j("a.gguf"), "--m=" + j("a.gguf"), j("big-00001-of-00003.gguf"), j("big-00003-of-00003.gguf")}, nil,
			append([]string{j("a.gguf")}, big...)},
		{"files overrides argv", []string{"x", "-m", j("a.gguf")}, []string{j("weights.raw")}, []string{j("weights.raw")}},
		{"files globs and dirs", []string{"x"}, []string{j("w.*"), j("hf"), j("gone/*")},
			append([]string{j("w.bin"), j("w.onnx"), j("w.pt")}, hf...)},
		{"files nonexistent", []string{"x", j("a.gguf")}, []string{j("gone.gguf")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Find(tc.argv, tc.files); !slices.Equal(got, tc.want) {
				t.Errorf("Find(%q, %q)\n got %q\nwant %q", tc.argv, tc.files, got, tc.want)
			}
		})
	}
}
