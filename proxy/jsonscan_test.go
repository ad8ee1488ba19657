package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime/multipart"
	"strings"
	"testing"
)

var jsonSeeds = []string{
	`{"model":"m"}`, ` { "model" : "m" , "stream" : true } `, `{"stream":true,"model":"a\"b"}`,
	`{"model":"\u006d"}`, `{"mod\u0065l":"m"}`, `{"model":1}`, `{"model":null}`, `{"model":""}`,
	`{"messages":[{"role":"user","content":"hi"}],"model":"m","max_tokens":8}`,
	`{"a":[1,-2.5e+3,0,-0,1E9,true,false,null,{},[],{"b":[[]]}],"model":"x"}`,
	`{}`, `[]`, `"m"`, `1`, ``, ` `, `{`, `{"model":"m"`, `{"model":"m",}`, `{"model" "m"}`,
	`{"model":"m"}x`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}", `{"a":[1,]}`, `{"a":{"b"}}`,
	`{"a":{"b":1,}}`, `{"model":"m","model":"n"}`, `{"model":"m","model":2}`, `{"stream":"true","model":"m"}`,
	"{\"model\":\"m\"}\n", `{"a":[` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `]}`,
}

// jsonModel agrees with encoding/json on what is valid, and on the model.
func checkJSONModel(t *testing.T, body []byte) {
	model, stream, err := jsonModel(body)
	valid := json.Valid(body)
	if valid == errors.Is(err, errMalformedJSON) {
		t.Fatalf("%q: json.Valid %v, jsonModel %v", body, valid, err)
	}
	if !valid {
		return
	}
	// A map, not a struct: keys match exactly (a struct's match any case,
	// which no backend does).
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		if !errors.Is(err, errNotObject) {
			t.Fatalf("%q is not an object, and jsonModel says %v", body, err)
		}
		return
	}
	var want string
	var wantStream bool
	raw, named := obj["model"]
	_ = json.Unmarshal(raw, &want)
	_ = json.Unmarshal(obj["stream"], &wantStream) // not a bool: false
	switch {
	case named && raw[0] != '"':
		if !errors.Is(err, errModelNotText) {
			t.Fatalf("%q: model %s is not text, and jsonModel says %q, %v", body, raw, model, err)
		}
	case want == "":
		if !errors.Is(err, errNoModel) {
			t.Fatalf("%q: no model, and jsonModel says %q, %v", body, model, err)
		}
	case err != nil || model != want:
		t.Fatalf("%q: model %q, jsonModel %q, %v", body, want, model, err)
	}
	if err == nil && stream != wantStream {
		t.Fatalf("%q: stream %v, jsonModel %v", body, wantStream, stream)
	}
}

func TestJSONModel(t *testing.T) {
	for _, s := range jsonSeeds {
		checkJSONModel(t, []byte(s))
	}
}

func FuzzJSONModel(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkJSONModel)
}

// BenchmarkJSONModel reads the model of a chat request: the one pass the
// fast path makes over every body.
func BenchmarkJSONModel(b *testing.B) {
	body := []byte(`{"model":"llama-8b","stream":true,"max_tokens":256,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"` + strings.Repeat("Tell me about model swapping. ", 40) + `"}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := jsonModel(body); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzFormModel: a multipart body with a file before the model field gives
// that model (trimmed, and cut at 1 KiB as a name never is longer); and
// any body at all gives a model or an error, never a panic.
func FuzzFormModel(f *testing.F) {
	f.Add("whisper-1", []byte("RIFF....WAVEfmt "), []byte("--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--x--\r\n"))
	f.Add(" spaced ", []byte{}, []byte("--x\r\n\r\n--x--"))
	f.Add("", []byte("--x\r\n"), []byte("not multipart"))
	f.Fuzz(func(t *testing.T, model string, file, raw []byte) {
		_, _ = formModel(`multipart/form-data; boundary=x`, raw)

		var body bytes.Buffer
		w := multipart.NewWriter(&body)
		fw, _ := w.CreateFormFile("file", "audio.wav")
		fw.Write(file)
		w.WriteField("model", model)
		w.Close()
		got, err := formModel(w.FormDataContentType(), body.Bytes())
		want := model
		if len(want) > 1024 {
			want = want[:1024]
		}
		want = string(bytes.TrimSpace([]byte(want)))
		switch {
		case want == "" && !errors.Is(err, errNoModel):
			t.Fatalf("model %q: got %q, %v; want no model", model, got, err)
		case want != "" && (err != nil || got != want):
			t.Fatalf("model %q: got %q, %v; want %q", model, got, err, want)
		}
	})
}
