package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// ValidationError lists every problem found in a configuration. Each problem
// starts with the path of the field it is about, such as
// "models.llama-8b.memory.vram: invalid size ...".
type ValidationError struct {
	Problems []string
}

// Error returns the problems, one per line.
func (e *ValidationError) Error() string {
	return strings.Join(e.Problems, "\n")
}

// Load reads the file at path and parses it with Parse. Errors name the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		var verr *ValidationError
		if errors.As(err, &verr) && len(verr.Problems) > 1 {
			// Put the problems under a header rather than glue the
			// first one to the file name.
			return nil, fmt.Errorf("config %s: %d problems:\n%w", path, len(verr.Problems), err)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse parses and validates a YAML configuration. A YAML syntax error is
// returned as the YAML package reports it; anything else wrong with the
// content is reported as a *ValidationError listing every problem.
//
// A key whose value is null ("ttl:" or "ttl: ~") counts as absent, so the
// default applies.
func Parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if err == io.EOF {
		// Empty, or nothing but comments.
		return nil, &ValidationError{Problems: []string{"no models: the file is empty"}}
	}
	if err != nil {
		return nil, err
	}
	// A second document would be ignored, which is the kind of silent
	// surprise strict validation is here to prevent.
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, &ValidationError{Problems: []string{
			fmt.Sprintf("line %d: a second YAML document; the file must hold one", extra.Line),
		}}
	}

	p := &parser{}
	c := p.config(&doc)
	if len(p.problems) > 0 {
		return nil, &ValidationError{Problems: p.problems}
	}
	return c, nil
}
