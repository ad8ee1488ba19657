package gguf

import "fmt"

// Token types (enum llama_token_type in llama.cpp's include/llama.h). The
// loader turns them into token attributes; BYTE is what makes <0xNN> a
// byte-fallback token and CONTROL what makes a token special.
const (
	tokenNormal  int32 = 1
	tokenUnknown int32 = 2
	tokenControl int32 = 3
	tokenByte    int32 = 6
)

// Ids of the special tokens. They are SentencePiece's usual ids, which are
// also llama.cpp's defaults for a "llama" tokenizer; the files name them in
// tokenizer.ggml.*_token_id all the same.
const (
	UnkID = 0 // <unk>
	BosID = 1 // <s>, put before every prompt (add_bos_token)
	EosID = 2 // </s>
)

// spaceMark is SentencePiece's stand-in for a space ("▁", U+2581): the
// tokenizer replaces spaces by it and puts one before the text, so
// "hi there" becomes the pieces of "▁hi▁there".
const spaceMark = "\u2581"

// words are the pieces a model generates: every generated token is one of
// these, with a space before it. Some are prefixes of others ("a" of "and").
var words = []string{
	"the", "a", "and", "of", "to", "in", "on", "is", "it", "we", "you", "they",
	"this", "that", "hello", "world", "hot", "swap", "model", "token", "server",
	"proxy", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "tiny",
	"llama", "test", "data", "fast", "slow", "light", "dark", "red", "green",
	"blue", "river", "stone", "cloud", "rain", "sun", "moon", "star", "tree",
	"leaf", "bird", "fish", "cat", "code", "byte", "bit", "load", "run", "stop",
	"start", "wait", "go", "yes", "no", "time", "day", "night", "water", "fire",
	"earth", "wind", "north", "south", "east", "west", "small", "large", "old",
	"new", "good", "bad", "up", "down", "left", "right", "open", "close",
}

// vocab is a SentencePiece-style ("llama") vocabulary:
//
//	0 <unk>, 1 <s>, 2 </s>                    special
//	3..258 <0x00>..<0xFF>                     byte fallback
//	<|im_start|>, <|im_end|>                  control tokens of the chat template
//	▁, a..z                                   single characters
//	▁h, ▁he, ▁hel, ▁hell, ▁hello, ...         every word with all its prefixes
//
// Any text can be tokenized: what no piece covers falls back to the byte
// tokens of its UTF-8 encoding. The prefixes are there because the
// SentencePiece tokenizer reaches a piece only by merging two adjacent
// pieces that are themselves in the vocabulary ("▁hell" + "o").
type vocab struct {
	tokens []string
	scores []float32
	types  []int32
	// output lists the token ids a model may generate: the whole words.
	output []int
}

func (v *vocab) add(text string, score float32, typ int32) int {
	v.tokens = append(v.tokens, text)
	v.scores = append(v.scores, score)
	v.types = append(v.types, typ)
	return len(v.tokens) - 1
}

func newVocab() *vocab {
	v := &vocab{}
	v.add("<unk>", 0, tokenUnknown)
	v.add("<s>", 0, tokenControl)
	v.add("</s>", 0, tokenControl)
	for b := 0; b < 256; b++ {
		// The loader finds byte tokens by exactly this spelling.
		v.add(fmt.Sprintf("<0x%02X>", b), 0, tokenByte)
	}
	// llama.cpp recognizes <|im_end|> by its text as the end-of-turn token.
	v.add("<|im_start|>", 0, tokenControl)
	v.add("<|im_end|>", 0, tokenControl)

	// Normal pieces get falling scores, like SentencePiece's log
	// probabilities; among possible merges the tokenizer takes the one
	// whose piece scores highest. A longer piece scores higher here, so
	// "▁hello" wins over splitting it.
	seen := map[string]int{}
	normal := func(piece string) int {
		if id, ok := seen[piece]; ok {
			return id
		}
		// Score by length in runes, ties broken by order.
		runes := len([]rune(piece))
		id := v.add(piece, float32(runes)-float32(len(v.tokens))/1e4, tokenNormal)
		seen[piece] = id
		return id
	}
	normal(spaceMark)
	for c := 'a'; c <= 'z'; c++ {
		normal(string(c))
	}
	for _, w := range words {
		piece := spaceMark + w
		for i := len(spaceMark) + 1; i < len(piece); i++ {
			normal(piece[:i])
		}
		// A word may already be there as another word's prefix ("a");
		// list it once.
		id := normal(piece)
		if !contains(v.output, id) {
			v.output = append(v.output, id)
		}
	}
	return v
}

func contains(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// ChatMLTemplate is the default tokenizer.chat_template: ChatML, with the
// <|im_start|> and <|im_end|> tokens the vocabulary has. llama-server
// renders it with its Jinja engine for /v1/chat/completions (and the
// Responses and Anthropic endpoints, which it maps onto chat).
const ChatMLTemplate = `{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}`
