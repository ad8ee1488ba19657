package gguf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/internal/mocktest"
)

// serverEnv names the llama-server binary for TestLlamaServer. The test is
// skipped unless it is set, e.g.
//
//	HOTSWAP_LLAMA_SERVER=/opt/llama/src/build/bin/llama-server go test ./internal/gguf/
const serverEnv = "HOTSWAP_LLAMA_SERVER"

// TestLlamaServer loads two generated models of different sizes into a real
// llama-server and checks that it serves them: health, chat (plain and
// streamed), completions, and a UTF-8 tokenize/detokenize round trip.
func TestLlamaServer(t *testing.T) {
	bin := os.Getenv(serverEnv)
	if bin == "" {
		t.Skipf("set %s to a llama-server binary to run this test", serverEnv)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		mib  int64
		seed uint64
	}{{"tiny-a", 4, 1}, {"tiny-b", 8, 2}} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".gguf")
			o := Options{Name: c.name, Seed: c.seed}.WithWeightBytes(c.mib << 20)
			if err := WriteTinyLlama(path, o); err != nil {
				t.Fatal(err)
			}
			s := startServer(t, bin, path, c.name)
			s.checkChat(t, c.name)
			s.checkStream(t)
			s.checkCompletion(t)
			s.checkTokenize(t)
			t.Logf("%s: %d bytes of weights, server RSS %s", c.name, o.WeightBytes(), s.rss())
		})
	}
}

type server struct {
	url string
	cmd *exec.Cmd
}

// client opens a connection per request. llama-server (cpp-httplib) closes
// the connection right after the last chunk of a streamed response, though
// its headers promise keep-alive ("Keep-Alive: timeout=5, max=100", no
// "Connection: close"). A pooling client puts that connection back in its
// pool and may send the next request on it before it sees the close; the
// request then fails with EOF, and Go does not retry a POST.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// startServer starts llama-server on a free loopback port and waits until
// /health answers 200. The server is killed when the test ends.
func startServer(t *testing.T, bin, model, alias string) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	var out mocktest.Output
	cmd := exec.Command(bin, "-m", model, "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--alias", alias, "-c", "256", "-np", "1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("llama-server output:\n%s", out.String())
		}
	})

	s := &server{url: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("llama-server exited: %v", err)
		default:
		}
		resp, err := client.Get(s.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("llama-server not healthy after 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) post(t *testing.T, path string, body any) *http.Response {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(s.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := readAll(resp)
		t.Fatalf("POST %s: %s: %s", path, resp.Status, msg)
	}
	return resp
}

func readAll(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err := b.ReadFrom(resp.Body)
	return b.String(), err
}

func (s *server) postJSON(t *testing.T, path string, body, into any) {
	t.Helper()
	resp := s.post(t, path, body)
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
}

// checkWords checks that text is n words of the vocabulary, each with a
// space before it, which is all these models can generate.
func checkWords(t *testing.T, text string, n int) {
	t.Helper()
	known := map[string]bool{}
	for _, w := range words {
		known[w] = true
	}
	fields := strings.Fields(text)
	ok := len(fields) == n && strings.HasPrefix(text, " ") && text == " "+strings.Join(fields, " ")
	for _, f := range fields {
		ok = ok && known[f]
	}
	if !ok {
		t.Errorf("generated %q, want %d words", text, n)
	}
}

var chatRequest = map[string]any{
	"model":      "ignored",
	"messages":   []map[string]string{{"role": "user", "content": "hi"}},
	"max_tokens": 8,
}

func (s *server) checkChat(t *testing.T, alias string) {
	var r struct {
		Model   string
		Choices []struct {
			FinishReason string `json:"finish_reason"`
			Message      struct{ Role, Content string }
		}
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	s.postJSON(t, "/v1/chat/completions", chatRequest, &r)
	if len(r.Choices) != 1 || r.Choices[0].FinishReason != "length" || r.Usage.CompletionTokens != 8 || r.Model != alias {
		t.Fatalf("chat completion: %+v", r)
	}
	checkWords(t, r.Choices[0].Message.Content, 8)
}

func (s *server) checkStream(t *testing.T) {
	req := map[string]any{"stream": true}
	for k, v := range chatRequest {
		req[k] = v
	}
	resp := s.post(t, "/v1/chat/completions", req)
	defer resp.Body.Close()
	var text strings.Builder
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct{ Content string }
			}
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !done {
		t.Error("stream did not end with [DONE]")
	}
	checkWords(t, text.String(), 8)
}

func (s *server) checkCompletion(t *testing.T) {
	var r struct {
		Choices []struct{ Text string }
	}
	s.postJSON(t, "/v1/completions", map[string]any{"prompt": "héllo wörld 🎉", "max_tokens": 5}, &r)
	if len(r.Choices) != 1 {
		t.Fatalf("completion: %+v", r)
	}
	checkWords(t, r.Choices[0].Text, 5)
}

// checkTokenize: any UTF-8 text tokenizes (bytes the pieces do not cover
// fall back to byte tokens) and detokenizes to itself, after the space the
// SentencePiece tokenizer puts before it.
func (s *server) checkTokenize(t *testing.T) {
	const text = "hello wörld 🎉 日本語\ttabs\nand the quick brown fox"
	var tok struct{ Tokens []int }
	s.postJSON(t, "/tokenize", map[string]any{"content": text}, &tok)
	if len(tok.Tokens) == 0 {
		t.Fatal("no tokens")
	}
	var detok struct{ Content string }
	s.postJSON(t, "/detokenize", map[string]any{"tokens": tok.Tokens}, &detok)
	if detok.Content != " "+text {
		t.Errorf("detokenized %q", detok.Content)
	}
}

// rss is the server's resident memory, from /proc (Linux only).
func (s *server) rss() string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
