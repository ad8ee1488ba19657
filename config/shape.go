package config

// What a model shows clients and how their requests are shaped on the way
// to its backend: parameters set, defaulted or stripped, the name sent
// upstream, variants that share one backend, and what /v1/models says of
// each name.

// Params are the changes made to a request's JSON body before it goes to
// the backend. They apply in this order: Strip, then Set, then Default, so
// that a key both stripped and set ends up set. Bodies that are not JSON
// objects (a multipart upload, say) are sent as they are.
type Params struct {
	// Strip lists keys removed from the client's body.
	Strip []ParamPath
	// Set are values that replace what the client sent, or are added.
	Set []Param
	// Default are values added where the client sent nothing.
	Default []Param
}

// ParamPath is a key in a JSON body: the keys of the objects it lies in,
// outermost first. "chat_template_kwargs.enable_thinking" in the file is
// {"chat_template_kwargs", "enable_thinking"}.
type ParamPath []string

// Param is one value at a path, as JSON text.
type Param struct {
	Path  ParamPath
	Value []byte
}

// Empty reports whether p changes nothing, so that the request's body can
// go upstream untouched.
func (p *Params) Empty() bool {
	return len(p.Strip) == 0 && len(p.Set) == 0 && len(p.Default) == 0
}

// String returns the path as the file writes it.
func (p ParamPath) String() string {
	s := ""
	for i, k := range p {
		if i > 0 {
			s += "."
		}
		s += k
	}
	return s
}

// Info is what /v1/models says of a model or variant besides its id.
type Info struct {
	// Name is a display name ("Qwen3 8B, thinking").
	Name string
	// Description is a sentence or two for people choosing a model.
	Description string
	// Capabilities say what the model takes and gives: some of
	// Capabilities' values.
	Capabilities []string
	// Metadata is free data passed through as a JSON object, or nil.
	Metadata []byte
}

// The capabilities a model may declare.
var Capabilities = []string{"text", "image", "audio", "embeddings", "tools"}

// Variant is another name for a loaded model, with parameters of its own:
// qwen-thinking and qwen-fast as one backend with different sampling.
// Variants share their model's backend, queue and memory, so switching
// between them never swaps.
type Variant struct {
	// ID is the name clients use; unique among model ids, variant ids and
	// aliases.
	ID string
	// Model is the id of the model it runs on.
	Model string
	// Aliases are other names for the variant.
	Aliases []string
	// Params are the model's params with the variant's own on top: a key
	// the variant sets or defaults replaces the model's rule for it, and
	// the keys either strips are stripped.
	Params Params
	// Unlisted variants are served but left out of /v1/models.
	Unlisted bool
	Info     Info
}

// Lookup maps a model id, a variant id or an alias of either to the model
// that serves it and, for a variant, the variant. Resolve is Lookup without
// the variant.
func (c *Config) Lookup(name string) (*Model, *Variant, bool) {
	if m, ok := c.Models[name]; ok {
		return m, nil, true
	}
	if c.names != nil {
		t, ok := c.names[name]
		if !ok {
			return nil, nil, false
		}
		return c.Models[t.model], t.variant, true
	}
	// A Config built by hand has no index; models are few, so a scan is
	// cheap enough.
	for _, m := range c.Models {
		for _, a := range m.Aliases {
			if a == name {
				return m, nil, true
			}
		}
		for _, v := range m.Variants {
			if v.ID == name {
				return m, v, true
			}
			for _, a := range v.Aliases {
				if a == name {
					return m, v, true
				}
			}
		}
	}
	return nil, nil, false
}

// RequestParams returns the rules for a request that named v's model, or
// v when it is not nil.
func (m *Model) RequestParams(v *Variant) *Params {
	if v != nil {
		return &v.Params
	}
	return &m.Params
}

// target is what a name other than a model id stands for.
type target struct {
	model   string
	variant *Variant
}
