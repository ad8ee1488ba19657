package proxy

import (
	"bytes"
	"encoding/json"
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

// jsonModel returns the top-level "model" string of a JSON object. The body
// is validated (a malformed request must not cost a model swap) but never
// decoded into a tree: only the model value is unmarshalled.
func jsonModel(body []byte) (string, error) {
	if !json.Valid(body) {
		return "", errMalformedJSON
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", errNotObject
	}
	i++
	for {
		i = skipSpace(body, i)
		if body[i] == '}' {
			return "", errNoModel
		}
		if body[i] == ',' {
			i = skipSpace(body, i+1)
		}
		keyEnd := skipString(body, i)
		key := body[i:keyEnd]
		i = skipSpace(body, keyEnd)
		i = skipSpace(body, i+1) // the colon
		valEnd := skipValue(body, i)
		if isModelKey(key) {
			if body[i] != '"' {
				return "", errModelNotText
			}
			var model string
			if err := json.Unmarshal(body[i:valEnd], &model); err != nil {
				return "", errModelNotText
			}
			if model == "" {
				return "", errNoModel
			}
			return model, nil
		}
		i = valEnd
	}
}

// isModelKey matches the quoted key "model", escapes included.
func isModelKey(quoted []byte) bool {
	if bytes.Equal(quoted, []byte(`"model"`)) {
		return true
	}
	if bytes.IndexByte(quoted, '\\') < 0 {
		return false
	}
	var k string
	return json.Unmarshal(quoted, &k) == nil && k == "model"
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i]. The
// input is known to be valid JSON.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' &&
			b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		return i
	}
}

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
