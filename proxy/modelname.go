package proxy

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
)

var (
	errMalformedJSON = errors.New("request body is not valid JSON")
	errNotObject     = errors.New("request body must be a JSON object")
	errNoModel       = errors.New("you must provide a model parameter")
	errModelNotText  = errors.New("the model parameter must be a string")
)

var errNoBoundary = errors.New("multipart request without a boundary")

// formModel returns the "model" field of a multipart/form-data body. Parts
// before it (an audio file, say) are skipped, not kept.
func formModel(contentType string, body []byte) (string, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return "", errNoBoundary
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return "", errNoModel
		}
		if err != nil {
			return "", errors.New("malformed multipart body: " + err.Error())
		}
		if part.FormName() != "model" {
			continue
		}
		// A model name is short; anything longer is not one.
		v, err := io.ReadAll(io.LimitReader(part, 1024))
		if err != nil {
			return "", errors.New("malformed multipart body: " + err.Error())
		}
		model := string(bytes.TrimSpace(v))
		if model == "" {
			return "", errNoModel
		}
		return model, nil
	}
}
