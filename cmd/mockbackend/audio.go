package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"
)

// Speech is 16-bit mono PCM at 16 kHz, 10 ms per input character: long
// enough to grow with the input, small enough for tests.
const (
	sampleRate     = 16000
	samplesPerChar = sampleRate / 100
)

// transcribe answers POST /v1/audio/transcriptions (and translations): a
// multipart form with a file and a model. The "transcript" names the file
// and its size, so tests can see the upload arrived whole.
func (m *mock) transcribe(w http.ResponseWriter, r *http.Request, c *call) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseMultipartForm(maxMultipartInMem); err != nil {
		badRequest(w, "invalid_request", "expected a multipart/form-data body: "+err.Error())
		return
	}
	defer r.MultipartForm.RemoveAll() //nolint:errcheck // temporary files only
	f, hdr, err := r.FormFile("file")
	if err != nil {
		badRequest(w, "missing_file", "the form has no file field")
		return
	}
	defer f.Close()
	n, err := io.Copy(io.Discard, f)
	if err != nil {
		badRequest(w, "invalid_request", "reading the file: "+err.Error())
		return
	}
	transcript := fmt.Sprintf("mock transcript of %s (%d bytes)", hdr.Filename, n)
	switch format := r.FormValue("response_format"); format {
	case "", "json", "verbose_json":
		writeJSON(w, http.StatusOK, map[string]string{"text": transcript})
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, transcript)
	default:
		badRequest(w, "invalid_response_format", fmt.Sprintf("response_format %q: the mock knows json and text", format))
	}
}

// speech answers POST /v1/audio/speech with a valid WAV of silence whose
// length follows the input's. It is WAV whatever response_format asks for.
func (m *mock) speech(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Model string `json:"model"`
		Input string `json:"input"`
		Voice string `json:"voice"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Input == "" {
		badRequest(w, "missing_input", "input is required")
		return
	}
	w.Header().Set("Content-Type", "audio/wav")
	w.Write(wav(utf8.RuneCountInString(req.Input) * samplesPerChar)) //nolint:errcheck // a client that left is no error here
}

// wav is a WAV file of n samples of silence.
func wav(n int) []byte {
	const bytesPerSample = 2
	data := uint32(n * bytesPerSample)
	b := make([]byte, 0, 44+data)
	le := binary.LittleEndian
	b = append(b, "RIFF"...)
	b = le.AppendUint32(b, 36+data)
	b = append(b, "WAVEfmt "...)
	b = le.AppendUint32(b, 16) // size of the fmt chunk
	b = le.AppendUint16(b, 1)  // PCM
	b = le.AppendUint16(b, 1)  // mono
	b = le.AppendUint32(b, sampleRate)
	b = le.AppendUint32(b, sampleRate*bytesPerSample) // bytes per second
	b = le.AppendUint16(b, bytesPerSample)            // block align
	b = le.AppendUint16(b, 8*bytesPerSample)          // bits per sample
	b = append(b, "data"...)
	b = le.AppendUint32(b, data)
	return append(b, make([]byte, data)...)
}

// voices answers GET /v1/audio/voices, the list TTS servers such as
// Kokoro-FastAPI serve; which model was asked for comes from ?model=.
func (m *mock) voices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"model":  r.URL.Query().Get("model"),
		"voices": []string{"mock_alloy", "mock_echo"},
	})
}
