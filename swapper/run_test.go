package swapper

import (
	"slices"
	"testing"
)

func TestRedactArgv(t *testing.T) {
	argv := []string{"llama-server", "-m", "/models/x.gguf", "--api-key", "sk-1", "--port", "1",
		"--hf-token=hf_abc", "-ngl", "99", "--API_KEY", "sk-2", "--token-budget", "5", "--password"}
	want := []string{"llama-server", "-m", "/models/x.gguf", "--api-key", "[redacted]", "--port", "1",
		"--hf-token=[redacted]", "-ngl", "99", "--API_KEY", "[redacted]", "--token-budget", "5", "--password"}
	if got := redactArgv(argv); !slices.Equal(got, want) {
		t.Errorf("redactArgv = %q\nwant %q", got, want)
	}
	if argv[4] != "sk-1" {
		t.Error("redactArgv changed its argument")
	}
}
