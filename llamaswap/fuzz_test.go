package llamaswap

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzConvert: whatever the file holds, the import answers without
// panicking, and what it writes is YAML.
func FuzzConvert(f *testing.F) {
	for _, name := range []string{"example.yaml", "legacy.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("models:\n  a:\n    cmd: x --port ${PORT}\n    filters:\n      setParams: {a.b: 1, a: {c: 2}}\n"))
	f.Add([]byte("macros: {a: '${b}', b: '${a}'}\nmodels:\n  m:\n    cmd: ${a} ${PORT}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		res, err := Convert(src, Options{})
		if err != nil {
			return
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(res.YAML, &doc); err != nil {
			t.Fatalf("the import is not YAML: %v\n%s", err, res.YAML)
		}
	})
}
