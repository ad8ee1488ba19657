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

// jsonModel returns the top-level "model" string of a JSON object, and
// whether its "stream" is true. The body is validated (a malformed request
// must not cost a model swap) but never decoded into a tree: only the model
// value is unmarshalled.
func jsonModel(body []byte) (model string, stream bool, err error) {
	if !json.Valid(body) {
		return "", false, errMalformedJSON
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", false, errNotObject
	}
	i++
	found := false
	for {
		i = skipSpace(body, i)
		if body[i] == '}' {
			break
		}
		if body[i] == ',' {
			i = skipSpace(body, i+1)
		}
		keyEnd := skipString(body, i)
		key := body[i:keyEnd]
		i = skipSpace(body, keyEnd)
		i = skipSpace(body, i+1) // the colon
		valEnd := skipValue(body, i)
		switch {
		case isKey(key, "model"):
			if body[i] != '"' {
				return "", false, errModelNotText
			}
			model = ""
			if err := json.Unmarshal(body[i:valEnd], &model); err != nil {
				return "", false, errModelNotText
			}
			found = true
		case isKey(key, "stream"):
			stream = string(body[i:valEnd]) == "true"
		}
		i = valEnd
	}
	if !found || model == "" {
		return "", stream, errNoModel
	}
	return model, stream, nil
}

// isKey matches a quoted key against name, escapes included.
func isKey(quoted []byte, name string) bool {
	if len(quoted) == len(name)+2 && string(quoted[1:len(quoted)-1]) == name {
		return true
	}
	if bytes.IndexByte(quoted, '\\') < 0 {
		return false
	}
	var k string
	return json.Unmarshal(quoted, &k) == nil && k == name
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
