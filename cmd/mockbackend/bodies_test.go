package main

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"slices"
	"strings"
	"testing"
)

// keptBodies reads GET /mock/bodies.
func (f *fixture) keptBodies() []keptBody {
	f.t.Helper()
	resp, body := f.do("GET", "/mock/bodies", "", nil)
	if resp.StatusCode != 200 {
		f.t.Fatalf("/mock/bodies: %d %s", resp.StatusCode, body)
	}
	var kept []keptBody
	if err := json.Unmarshal(body, &kept); err != nil {
		f.t.Fatalf("%v: %s", err, body)
	}
	return kept
}

// TestKeepBodies: the last -keep-bodies bodies of model POSTs are kept as
// they arrived, oldest first; GETs and health checks are not.
func TestKeepBodies(t *testing.T) {
	f := start(t, "-keep-bodies", "2", "-tokens", "1")
	f.waitReady()
	if kept := f.keptBodies(); len(kept) != 0 {
		t.Fatalf("kept before any request: %+v", kept)
	}
	bodies := []string{`{"model":"m","prompt":"one"}`, "{ \"model\" : \"m\",\n\"prompt\":\"two\", \"n\":1.50 }", `{"model":"m","input":"three"}`}
	f.postJSON("/v1/completions", bodies[0])
	f.postJSON("/v1/completions", bodies[1])
	f.do("GET", "/v1/models", "", nil)
	f.postJSON("/v1/embeddings", bodies[2])
	kept := f.keptBodies()
	want := []keptBody{
		{N: 2, Path: "/v1/completions", ContentType: "application/json", Body: bodies[1]},
		{N: 3, Path: "/v1/embeddings", ContentType: "application/json", Body: bodies[2]},
	}
	if !slices.Equal(kept, want) {
		t.Errorf("kept %+v\nwant %+v", kept, want)
	}

	// A multipart upload is kept as it came too.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("model", "m")
	fw, _ := mw.CreateFormFile("file", "a.wav")
	fw.Write([]byte("RIFF\x00\x01"))
	mw.Close()
	if resp, body := f.do("POST", "/v1/audio/transcriptions", mw.FormDataContentType(), form.Bytes()); resp.StatusCode != 200 {
		t.Fatalf("transcription: %d %s", resp.StatusCode, body)
	}
	if last := f.keptBodies()[1]; last.Body != form.String() || last.ContentType != mw.FormDataContentType() {
		t.Errorf("multipart kept as %+v", last)
	}
}

// TestServedModelName: with -served-model-name, the mock checks the model
// as vLLM does: another name gets vLLM's 404 (and is not served), none is
// served, and answers carry the served name.
func TestServedModelName(t *testing.T) {
	f := start(t, "-served-model-name", "qwen3-8b, qwen", "-model", "local", "-tokens", "2", "-stream-interval", "1ms")
	f.waitReady()

	resp, body := f.postJSON("/v1/chat/completions", `{"model":"local","messages":[]}`)
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != 404 {
		t.Fatalf("another name: %d %s", resp.StatusCode, body)
	}
	want := map[string]any{"object": "error", "message": "The model `local` does not exist.", "type": "NotFoundError",
		"param": nil, "code": 404.0}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("404 body %s: %s is %v, want %v", body, k, e[k], v)
		}
	}
	if st := f.stats(); st.Requests != 0 {
		t.Errorf("a refused request was served: %+v", st)
	}

	for _, c := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"qwen3-8b","messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/chat/completions", `{"model":"qwen","messages":[]}`},
		{"/v1/chat/completions", `{"messages":[]}`},
		{"/v1/completions", `{"model":"qwen","prompt":"x"}`},
		{"/v1/embeddings", `{"model":"qwen","input":"x"}`},
	} {
		resp, body := f.postJSON(c.path, c.body)
		var v struct{ Model string }
		if err := json.Unmarshal(body, &v); err != nil || resp.StatusCode != 200 || v.Model != "qwen3-8b" {
			t.Errorf("%s %s: %d %s", c.path, c.body, resp.StatusCode, body)
		}
	}
	// Streamed: every chunk.
	resp, body = f.postJSON("/v1/chat/completions", `{"model":"qwen","stream":true,"messages":[]}`)
	events, err := readEvents(bytes.NewReader(body))
	if err != nil || resp.StatusCode != 200 || len(events) < 3 {
		t.Fatalf("stream: %d %v %s", resp.StatusCode, err, body)
	}
	for _, ev := range events {
		if ev.data != "[DONE]" && !strings.Contains(ev.data, `"model":"qwen3-8b"`) {
			t.Errorf("stream event %s", ev.data)
		}
	}

	// Multipart forms are checked by their model field.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("model", "whisper")
	fw, _ := mw.CreateFormFile("file", "a.wav")
	fw.Write([]byte("RIFF"))
	mw.Close()
	if resp, body := f.do("POST", "/v1/audio/transcriptions", mw.FormDataContentType(), form.Bytes()); resp.StatusCode != 404 ||
		!strings.Contains(string(body), "NotFoundError") {
		t.Errorf("a form for another model: %d %s", resp.StatusCode, body)
	}

	// /v1/models lists the served names, as vLLM does.
	_, body = f.do("GET", "/v1/models", "", nil)
	var list struct{ Data []struct{ ID string } }
	json.Unmarshal(body, &list)
	if len(list.Data) != 2 || list.Data[0].ID != "qwen3-8b" || list.Data[1].ID != "qwen" {
		t.Errorf("/v1/models: %s", body)
	}
}

func TestBodyFlags(t *testing.T) {
	o, err := parseFlags([]string{"-port", "1", "-keep-bodies", "3", "-served-model-name", "a,b"}, io.Discard)
	if err != nil || o.keepBodies != 3 || !slices.Equal(o.served, []string{"a", "b"}) {
		t.Errorf("%+v %v", o, err)
	}
	for _, args := range [][]string{{"-port", "1", "-keep-bodies", "-1"}, {"-port", "1", "-served-model-name", "a,,b"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
