package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"strconv"
	"time"
)

// maxImages is OpenAI's limit on n.
const maxImages = 10

// tinyPNG is the base64 of the image every request gets: an 8x8 grey
// square, encoded by image/png so that it is valid by construction.
func tinyPNG() string {
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = 0x80
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err) // encoding to memory cannot fail
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// imageGenerations answers POST /v1/images/generations (JSON).
func (m *mock) imageGenerations(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Model          string `json:"model"`
		Prompt         string `json:"prompt"`
		N              int    `json:"n"`
		Size           string `json:"size"`
		ResponseFormat string `json:"response_format"`
	}
	if !decode(w, r, &req) {
		return
	}
	m.images(w, req.N, req.ResponseFormat)
}

// imageEdits answers POST /v1/images/edits and variations (multipart).
func (m *mock) imageEdits(w http.ResponseWriter, r *http.Request, c *call) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseMultipartForm(maxMultipartInMem); err != nil {
		badRequest(w, "invalid_request", "expected a multipart/form-data body: "+err.Error())
		return
	}
	defer r.MultipartForm.RemoveAll() //nolint:errcheck // temporary files only
	n := 0
	if s := r.FormValue("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			badRequest(w, "invalid_n", "n must be a number")
			return
		}
	}
	m.images(w, n, r.FormValue("response_format"))
}

// images answers with n copies of the mock image (n = 0 means 1), as
// base64 or, for response_format "url", as data: URLs since the mock
// serves no files.
func (m *mock) images(w http.ResponseWriter, n int, format string) {
	if n == 0 {
		n = 1
	}
	if n < 1 || n > maxImages {
		badRequest(w, "invalid_n", fmt.Sprintf("n must be 1 to %d", maxImages))
		return
	}
	data := make([]map[string]string, n)
	for i := range data {
		if format == "url" {
			data[i] = map[string]string{"url": "data:image/png;base64," + m.png}
		} else {
			data[i] = map[string]string{"b64_json": m.png}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"created": time.Now().Unix(), "data": data})
}
