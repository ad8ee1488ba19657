package main

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs a mock in-process on 127.0.0.1 and returns its base URL.
func serve(t *testing.T, args ...string) (string, *mock) {
	t.Helper()
	opts, err := parseFlags(append([]string{"-listen", "127.0.0.1:0", "-progress-interval", "0"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		t.Fatal(err)
	}
	m := newMock(opts, io.Discard)
	srv := &http.Server{Handler: m}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	go m.load(ln.Addr().String())
	return "http://" + ln.Addr().String(), m
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func post(t *testing.T, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get(t, url+"/health"); code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHealthIsLoadingThenReady(t *testing.T) {
	url, _ := serve(t, "-startup", "300ms")
	if code, body := get(t, url+"/health"); code != 503 || !strings.Contains(string(body), "loading") {
		t.Errorf("during startup: %d %s", code, body)
	}
	resp, _ := post(t, url+"/v1/chat/completions", "application/json", []byte(`{"model":"m"}`))
	if resp.StatusCode != 503 {
		t.Errorf("a request while loading: %d", resp.StatusCode)
	}
	waitReady(t, url)
}

func TestChatEchoAndStats(t *testing.T) {
	url, _ := serve(t, "-tokens", "3")
	waitReady(t, url)
	resp, body := post(t, url+"/v1/chat/completions", "application/json",
		[]byte(`{"model":"asked","messages":[{"role":"user","content":"ping"}]}`))
	var out struct {
		Model   string
		Choices []struct{ Message struct{ Content string } }
	}
	if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if out.Model != "asked" || out.Choices[0].Message.Content != "tok0 tok1 tok2 | echo: ping" {
		t.Errorf("answer %s", body)
	}
	if resp.Header.Get("X-Mock-Pid") == "" {
		t.Error("no X-Mock-Pid")
	}
	_, stats := get(t, url+"/mock/stats")
	var st struct {
		Requests int `json:"requests"`
		InFlight int `json:"in_flight"`
	}
	json.Unmarshal(stats, &st)
	if st.Requests != 1 || st.InFlight != 0 {
		t.Errorf("stats %s", stats)
	}
}

func TestStreamIsIncremental(t *testing.T) {
	url, _ := serve(t, "-tokens", "5", "-stream-interval", "60ms")
	waitReady(t, url)
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var times []time.Time
	var last string
	buf := make([]byte, 64<<10)
	var pending string
	for {
		n, err := resp.Body.Read(buf)
		pending += string(buf[:n])
		for {
			i := strings.Index(pending, "\n\n")
			if i < 0 {
				break
			}
			last, pending = pending[:i], pending[i+2:]
			times = append(times, time.Now())
		}
		if err != nil {
			break
		}
	}
	if last != "data: [DONE]" || len(times) != 8 {
		t.Fatalf("%d events, last %q", len(times), last)
	}
	if spread := times[len(times)-1].Sub(times[0]); spread < 200*time.Millisecond {
		t.Errorf("events came together (%s): not streamed", spread)
	}
}

func TestEmbeddingsAndTranscription(t *testing.T) {
	url, _ := serve(t, "-dim", "5")
	waitReady(t, url)
	_, body := post(t, url+"/v1/embeddings", "application/json", []byte(`{"model":"e","input":["a","b","c"]}`))
	var emb struct {
		Data []struct{ Embedding []float64 }
	}
	if json.Unmarshal(body, &emb); len(emb.Data) != 3 || len(emb.Data[0].Embedding) != 5 {
		t.Errorf("embeddings %s", body)
	}
	var form bytes.Buffer
	w := multipart.NewWriter(&form)
	fw, _ := w.CreateFormFile("file", "a.wav")
	fw.Write(make([]byte, 123))
	w.WriteField("model", "whisper")
	w.Close()
	_, body = post(t, url+"/v1/audio/transcriptions", w.FormDataContentType(), form.Bytes())
	if !strings.Contains(string(body), "a.wav (123 bytes)") {
		t.Errorf("transcription %s", body)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "300MiB": 300 << 20, "1GB": 1e9, "4096": 4096, "2KiB": 2048} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v", in, got, err)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error("parseSize(lots) succeeded")
	}
}
