package proxy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hotswap/hotswap/config"
)

// params builds config.Params from dotted keys, as the file writes them.
func params(strip []string, set, def [][2]string) *config.Params {
	p := &config.Params{}
	for _, k := range strip {
		p.Strip = append(p.Strip, strings.Split(k, "."))
	}
	for _, kv := range set {
		p.Set = append(p.Set, config.Param{Path: strings.Split(kv[0], "."), Value: []byte(kv[1])})
	}
	for _, kv := range def {
		p.Default = append(p.Default, config.Param{Path: strings.Split(kv[0], "."), Value: []byte(kv[1])})
	}
	return p
}

// shapeBytes shapes body with plan, checking that the size told is the
// size written; a body nothing changes comes back as it is.
func shapeBytes(t testing.TB, plan *shapePlan, body []byte) []byte {
	t.Helper()
	sh, n := plan.shape(body)
	if sh == nil {
		if n != len(body) {
			t.Fatalf("unchanged, but size %d for %d bytes", n, len(body))
		}
		return body
	}
	defer sh.done()
	for i := 1; i < len(sh.edits); i++ {
		if sh.edits[i].start < sh.edits[i-1].end {
			t.Fatalf("%q: edits out of order: %+v", body, sh.edits)
		}
	}
	out := sh.write(nil)
	if len(out) != n {
		t.Fatalf("%q: told %d bytes, wrote %d: %q", body, n, len(out), out)
	}
	return out
}

func TestShapeExact(t *testing.T) {
	temp := [][2]string{{"temperature", "0.6"}}
	think := [][2]string{{"chat_template_kwargs.enable_thinking", "true"}}
	for _, c := range []struct {
		name     string
		p        *config.Params
		upstream string
		in, want string
	}{
		{"set adds", params(nil, temp, nil), "",
			`{"model":"q","messages":[]}`, `{"model":"q","messages":[],"temperature":0.6}`},
		{"set replaces, spacing kept", params(nil, temp, nil), "",
			"{ \"model\" : \"q\" ,\n \"temperature\" : 1e0 , \"n\":1.50}", "{ \"model\" : \"q\" ,\n \"temperature\" : 0.6 , \"n\":1.50}"},
		{"set in an empty object", params(nil, temp, nil), "", `{ }`, `{"temperature":0.6 }`},
		{"set replaces an escaped key's value", params(nil, temp, nil), "",
			`{"tempera\u0074ure":2,"model":"q"}`, `{"tempera\u0074ure":0.6,"model":"q"}`},
		{"set replaces every occurrence", params(nil, temp, nil), "",
			`{"temperature":1,"model":"q","temperature":2}`, `{"temperature":0.6,"model":"q","temperature":0.6}`},
		{"strip first", params([]string{"logit_bias"}, nil, nil), "",
			`{"logit_bias":{"1":2}, "model":"q"}`, `{"model":"q"}`},
		{"strip middle", params([]string{"logit_bias"}, nil, nil), "",
			`{"model":"q", "logit_bias":{}, "n":1}`, `{"model":"q", "n":1}`},
		{"strip last", params([]string{"logit_bias"}, nil, nil), "",
			`{"model":"q","logit_bias":[1,2] }`, `{"model":"q" }`},
		{"strip all", params([]string{"a", "b"}, nil, nil), "", `{"a":1,"b":2}`, `{}`},
		{"strip first and last", params([]string{"a", "c"}, nil, nil), "", `{"a":1,"b":2,"c":3}`, `{"b":2}`},
		{"strip duplicates", params([]string{"a"}, nil, nil), "", `{"a":1,"b":2,"a":3}`, `{"b":2}`},
		{"strip absent: unchanged", params([]string{"a"}, nil, nil), "", `{"b":2}`, `{"b":2}`},
		{"strip nested", params([]string{"chat_template_kwargs.foo"}, nil, nil), "",
			`{"chat_template_kwargs":{"foo":1,"bar":2},"model":"q"}`, `{"chat_template_kwargs":{"bar":2},"model":"q"}`},
		{"strip nested in a non-object", params([]string{"a.b"}, nil, nil), "", `{"a":[{"b":1}]}`, `{"a":[{"b":1}]}`},
		{"strip then set", params([]string{"temperature"}, temp, nil), "", `{"temperature":1}`, `{"temperature":0.6}`},
		{"strip then set, absent", params([]string{"temperature"}, temp, nil), "", `{"n":1}`, `{"n":1,"temperature":0.6}`},
		{"strip then default is a set", params([]string{"top_p"}, nil, [][2]string{{"top_p", "0.9"}}), "",
			`{"top_p":0.5}`, `{"top_p":0.9}`},
		{"strip a parent, set inside", params([]string{"chat_template_kwargs"}, think, nil), "",
			`{"chat_template_kwargs":{"foo":1},"n":1}`, `{"chat_template_kwargs":{"enable_thinking":true},"n":1}`},
		{"strip a parent, set inside, absent", params([]string{"chat_template_kwargs"}, think, nil), "",
			`{"n":1}`, `{"n":1,"chat_template_kwargs":{"enable_thinking":true}}`},
		{"default absent", params(nil, nil, [][2]string{{"top_p", "0.95"}}), "", `{"model":"q"}`, `{"model":"q","top_p":0.95}`},
		{"default present", params(nil, nil, [][2]string{{"top_p", "0.95"}}), "", `{"top_p":1}`, `{"top_p":1}`},
		{"default null", params(nil, nil, [][2]string{{"top_p", "0.95"}}), "", `{"top_p":null}`, `{"top_p":0.95}`},
		{"default with a strip inside", params([]string{"a.x"}, nil, [][2]string{{"a", `{"k":1}`}}), "",
			`{"a":{"x":1,"y":2}}`, `{"a":{"y":2}}`},
		{"nested set creates its object", params(nil, think, nil), "",
			`{"model":"q"}`, `{"model":"q","chat_template_kwargs":{"enable_thinking":true}}`},
		{"nested set in an object", params(nil, think, nil), "",
			`{"chat_template_kwargs":{"foo":1,"enable_thinking":false}}`, `{"chat_template_kwargs":{"foo":1,"enable_thinking":true}}`},
		{"nested set adds to an object", params(nil, think, nil), "",
			`{"chat_template_kwargs":{"foo":1}}`, `{"chat_template_kwargs":{"foo":1,"enable_thinking":true}}`},
		{"nested set adds to an empty object", params(nil, think, nil), "",
			`{"chat_template_kwargs":{}}`, `{"chat_template_kwargs":{"enable_thinking":true}}`},
		{"nested set replaces null", params(nil, think, nil), "",
			`{"chat_template_kwargs":null}`, `{"chat_template_kwargs":{"enable_thinking":true}}`},
		{"nested set replaces a non-object", params(nil, think, [][2]string{{"chat_template_kwargs.x", "1"}}), "",
			`{"chat_template_kwargs":"s"}`, `{"chat_template_kwargs":{"enable_thinking":true,"x":1}}`},
		{"nested default leaves a non-object", params(nil, nil, [][2]string{{"chat_template_kwargs.x", "1"}}), "",
			`{"chat_template_kwargs":[1]}`, `{"chat_template_kwargs":[1]}`},
		{"nested default in null", params(nil, nil, [][2]string{{"a.b.c", "1"}}), "",
			`{"a":{"b":null}}`, `{"a":{"b":{"c":1}}}`},
		{"deep nesting made", params(nil, [][2]string{{"a.b.c", `"x"`}, {"a.d", "[1, 2]"}}, nil), "",
			`{}`, `{"a":{"b":{"c":"x"},"d":[1, 2]}}`},
		{"upstream model", params(nil, nil, nil), "qwen3-8b",
			`{"model":"qwen","n":1.0e+2}`, `{"model":"qwen3-8b","n":1.0e+2}`},
		{"upstream model escaped", params(nil, nil, nil), `a"b\c`,
			`{"model":"qwen"}`, `{"model":"a\"b\\c"}`},
		{"upstream model not added", params(nil, nil, nil), "qwen3-8b", `{"input":"x"}`, `{"input":"x"}`},
		{"upstream model with rules", params([]string{"logit_bias"}, temp, nil), "up",
			`{"logit_bias":{},"model":"qwen","temperature":1}`, `{"model":"up","temperature":0.6}`},
		{"values kept byte for byte", params(nil, temp, nil), "",
			`{"messages":[{"role":"user","content":"h\u00e9 \"x\" \\"}],"n":-0.0E-5,"b":true,"z":null}`,
			`{"messages":[{"role":"user","content":"h\u00e9 \"x\" \\"}],"n":-0.0E-5,"b":true,"z":null,"temperature":0.6}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan := compileShape(c.p, c.upstream)
			if plan == nil {
				t.Fatal("no plan")
			}
			got := shapeBytes(t, plan, []byte(c.in))
			if string(got) != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// Nothing to do: no plan, so the body is not even walked.
func TestShapeNothing(t *testing.T) {
	if compileShape(&config.Params{}, "") != nil || compileShape(nil, "") != nil {
		t.Error("a plan for no rules")
	}
}

// A body that is not what it was said to be goes as it is, without a
// panic.
func TestShapeMalformed(t *testing.T) {
	plan := compileShape(params([]string{"a"}, [][2]string{{"b.c", "1"}}, [][2]string{{"d", "2"}}), "up")
	for _, body := range []string{``, ` `, `[]`, `"x"`, `{`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,`, `{"a" 1}`,
		`{"b":{"c":}}`, `{"b":{`, `{a:1}`, `{"a":1]`, `{"model":"m"}}`} {
		sh, n := plan.shape([]byte(body))
		if sh != nil {
			t.Errorf("%q: shaped (%d bytes)", body, n)
			sh.done()
		}
	}
}

// refShape is what the rules mean, on a decoded body: strip, then set,
// then default, then the model's name.
func refShape(t testing.TB, obj map[string]any, p *config.Params, upstream string) {
	t.Helper()
	decode := func(b []byte) any {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, path := range p.Strip {
		cur := obj
		for _, k := range path[:len(path)-1] {
			next, ok := cur[k].(map[string]any)
			if !ok {
				cur = nil
				break
			}
			cur = next
		}
		if cur != nil {
			delete(cur, path[len(path)-1])
		}
	}
	put := func(path config.ParamPath, value []byte, force bool) {
		cur := obj
		for _, k := range path[:len(path)-1] {
			next, ok := cur[k].(map[string]any)
			if !ok {
				if cur[k] != nil && !force {
					return // a default yields to what the client sent
				}
				next = map[string]any{}
				cur[k] = next
			}
			cur = next
		}
		last := path[len(path)-1]
		if force || cur[last] == nil {
			cur[last] = decode(value)
		}
	}
	for _, r := range p.Set {
		put(r.Path, r.Value, true)
	}
	for _, r := range p.Default {
		put(r.Path, r.Value, false)
	}
	if _, ok := obj["model"]; ok && upstream != "" {
		obj["model"] = upstream
	}
}

func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var obj map[string]any
	err := d.Decode(&obj)
	return obj, err
}

// fuzzPlans are the rules the fuzz test shapes with: every kind of rule,
// nested, overlapping as the configuration allows.
var fuzzPlans = []struct {
	p        *config.Params
	upstream string
}{
	{params([]string{"a"}, [][2]string{{"b", `{"x":1}`}}, [][2]string{{"c", "null"}, {"d", `"dv"`}}), "up"},
	{params([]string{"a.b", "c"}, [][2]string{{"a.c.d", "true"}, {"c", "[1]"}}, [][2]string{{"a.e", "2"}, {"f.g.h", "3"}}), ""},
	{params([]string{"a", "b.x"}, [][2]string{{"a.y", "1"}}, [][2]string{{"b", `{"z":0}`}, {"a.w", `"w"`}}), "m2"},
	{params([]string{"model2"}, nil, [][2]string{{"a", "1"}, {"b.c", "2"}}), ""},
}

func FuzzShape(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"a":{"b":1,"c":{"d":false,"x":2}},"model":"m"}`, `{"a":null,"b":"s","c":{}}`,
		`{"a":[],"a":{"y":2},"b":{"x":1,"x":2},"f":{"g":null}}`, `{"\u0061":{"\u0062":1},"model":1}`, `{ "f" : { "g" : { } } }`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if i := skipSpace(body, 0); i >= len(body) || body[i] != '{' || !json.Valid(body) {
			return
		}
		for _, fp := range fuzzPlans {
			plan := compileShape(fp.p, fp.upstream)
			out := shapeBytes(t, plan, body)
			if !json.Valid(out) {
				t.Fatalf("%q shaped is not JSON: %q", body, out)
			}
			want, err := decodeObject(body)
			if err != nil {
				t.Fatal(err)
			}
			refShape(t, want, fp.p, fp.upstream)
			got, err := decodeObject(out)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q with %+v:\n got %v\nwant %v\n(%q)", body, fp.p, got, want, out)
			}
		}
	})
}

// A huge body: shaped in one pass, its messages copied as they are.
func TestShapeHuge(t *testing.T) {
	big := strings.Repeat(`{"role":"user","content":"`+strings.Repeat("x", 1000)+`"},`, 10000)
	body := []byte(`{"model":"q","messages":[` + big + `{"role":"user","content":"end"}],"temperature":1}`)
	plan := compileShape(params([]string{"logit_bias"}, [][2]string{{"temperature", "0.6"}}, [][2]string{{"top_p", "0.9"}}), "up")
	out := shapeBytes(t, plan, body)
	want := strings.Replace(strings.Replace(string(body), `"model":"q"`, `"model":"up"`, 1), `"temperature":1}`, `"temperature":0.6,"top_p":0.9}`, 1)
	if string(out) != want {
		t.Errorf("shaped %d bytes into %d, want %d", len(body), len(out), len(want))
	}
}

// A body nested as deep as jsonModel takes is walked as deep.
func TestShapeDeep(t *testing.T) {
	deep := `{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `,"model":"m"}`
	if _, _, err := jsonModel([]byte(deep)); err != nil {
		t.Fatal(err)
	}
	out := shapeBytes(t, compileShape(params(nil, [][2]string{{"t", "1"}}, nil), "up"), []byte(deep))
	if !bytes.HasSuffix(out, []byte(`,"model":"up","t":1}`)) {
		t.Errorf("%s", out[len(out)-40:])
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "qwen3-8b", `a"b\c`, "tab\there\x01", "é"} {
		want, _ := json.Marshal(s)
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil || back != s {
			t.Errorf("%q: %s (want %s): %v", s, appendJSONString(nil, s), want, err)
		}
	}
}

func BenchmarkShape(b *testing.B) {
	rules := params([]string{"logit_bias", "chat_template_kwargs.foo"},
		[][2]string{{"temperature", "0.6"}, {"chat_template_kwargs.enable_thinking", "true"}},
		[][2]string{{"top_p", "0.95"}, {"top_k", "20"}})
	small := []byte(`{"model":"qwen","max_tokens":64,"messages":[{"role":"system","content":"You are a helpful assistant."},` +
		`{"role":"user","content":"What is the capital of France?"}],"temperature":1,"logit_bias":{"50256":-100}}`)
	var msgs []string
	for len(strings.Join(msgs, ",")) < 100<<10 {
		msgs = append(msgs, `{"role":"user","content":"`+strings.Repeat("lorem ipsum dolor sit amet ", 40)+`"}`)
	}
	large := []byte(`{"model":"qwen","messages":[` + strings.Join(msgs, ",") + `],"temperature":1,"stream":true}`)
	for _, c := range []struct {
		name     string
		body     []byte
		upstream string
	}{{"small", small, ""}, {"small+upstream", small, "qwen3-8b"}, {"100KB", large, ""}, {"100KB+upstream", large, "qwen3-8b"}} {
		b.Run(c.name, func(b *testing.B) {
			plan := compileShape(rules, c.upstream)
			out := make([]byte, 0, len(c.body)+1024)
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				sh, _ := plan.shape(c.body)
				out = sh.write(out[:0])
				sh.done()
			}
		})
	}
}
