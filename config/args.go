package config

import (
	"errors"
	"fmt"
	"strings"
)

// SplitArgs splits s into words the way a POSIX shell splits a simple
// command, without running one:
//
//   - spaces, tabs and newlines separate words;
//   - single quotes keep everything up to the next single quote literally;
//   - double quotes keep everything literally except that a backslash
//     escapes \ " $ and ` and a backslash-newline is removed;
//   - outside quotes a backslash makes the next character literal, and a
//     backslash-newline is removed;
//   - quotes join with what touches them: a'b c'd is the one word "ab cd",
//     and "" is an empty word.
//
// Nothing else is special: there is no expansion, globbing, redirection,
// piping or comment, so "|" or ">" are passed to the program as words.
// ${PORT} and ${MODEL} are left in place for Model.Expand, however quoted.
// An unterminated quote or a trailing backslash is an error.
func SplitArgs(s string) ([]string, error) {
	var (
		args   []string
		word   strings.Builder
		inWord bool // a word has started, even if it is empty so far ("")
	)
	for i := 0; i < len(s); i++ {
		// Every special character is ASCII, so walking bytes is safe with
		// UTF-8: other bytes are copied through unchanged.
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r':
			if inWord {
				args = append(args, word.String())
				word.Reset()
				inWord = false
			}
		case '\\':
			if i+1 == len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			if s[i] == '\n' {
				continue // line continuation
			}
			word.WriteByte(s[i])
			inWord = true
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote at offset %d", i)
			}
			word.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case '"':
			start := i
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					switch s[i+1] {
					case '\\', '"', '$', '`':
						i++
						word.WriteByte(s[i])
						continue
					case '\n':
						i++
						continue
					}
				}
				word.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, fmt.Errorf("unterminated double quote at offset %d", start)
			}
			inWord = true
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		args = append(args, word.String())
	}
	return args, nil
}
