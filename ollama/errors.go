package ollama

import "encoding/json"

// ErrorBody is an error in Ollama's shape: {"error": "..."}.
func ErrorBody(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return b
}
