// Package ollama speaks Ollama's API: it translates Ollama's requests into
// the OpenAI requests hotswap's backends serve, and their answers back
// into Ollama's, whole or as NDJSON streams, and describes models as
// Ollama's listing endpoints do. It does no I/O.
package ollama
