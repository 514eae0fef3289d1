package peftdef

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pattern is PEFT's rank_pattern or alpha_pattern: per-module values that override the config's
// r or lora_alpha, as an ordered list of (key, value) entries. A key is a regular expression
// fragment matched against the end of a module path on a dot boundary — key k matches module p
// when p fully matches `(.*\.)?(k)` — so "q_proj" matches "model.layers.3.self_attn.q_proj",
// "layers\.0\.self_attn\.q_proj" only layer 0's q_proj, and "experts.*.w1" any expert's w1. The
// first key in file order that matches decides (PEFT's get_pattern_key); a module no key matches
// keeps the config's value. JSON and YAML read and write it as an object in that order.
type Pattern[V int | float64] []PatternEntry[V]

// PatternEntry is one key of a Pattern and its value.
type PatternEntry[V int | float64] struct {
	Key   string
	Value V
}

// Lookup returns the value of the first entry whose key matches module, and that key; ok is
// false when none matches (or a key is not a valid expression: Check reports that).
func (p Pattern[V]) Lookup(module string) (v V, key string, ok bool) {
	for _, e := range p {
		re, err := patternRegexp(e.Key)
		if err != nil {
			continue
		}
		if re.MatchString(module) {
			return e.Value, e.Key, true
		}
	}
	return v, "", false
}

// PatternMatches reports whether key matches module path p (see Pattern).
func PatternMatches(key, p string) bool {
	re, err := patternRegexp(key)
	return err == nil && re.MatchString(p)
}

// patternRegexp compiles key as PEFT's `(.*\.)?(key)$` anchored at the start (re.match).
func patternRegexp(key string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:.*\.)?(?:` + key + `)$`)
}

// Check reports an empty or invalid key, a key given twice, and values out of range: ranks must be
// ≥ 1; alphas finite, non-zero and finite in float32. what names the key ("rank_pattern").
func (p Pattern[V]) Check(what string) error {
	seen := map[string]bool{}
	for _, e := range p {
		if e.Key == "" {
			return fmt.Errorf("%s: empty key (a module name, a dotted suffix or a regular expression)", what)
		}
		if seen[e.Key] {
			return fmt.Errorf("%s: key %q given twice", what, e.Key)
		}
		seen[e.Key] = true
		if _, err := patternRegexp(e.Key); err != nil {
			return fmt.Errorf("%s: key %q is not a regular expression: %v", what, e.Key, err)
		}
		switch v := any(e.Value).(type) {
		case int:
			if v < 1 {
				return fmt.Errorf("%s[%q] = %d: a rank must be ≥ 1", what, e.Key, v)
			}
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) || v == 0 || math.IsInf(float64(float32(v)), 0) || float32(v) == 0 {
				return fmt.Errorf("%s[%q] = %v: an alpha must be a finite non-zero number in float32", what, e.Key, v)
			}
		}
	}
	return nil
}

// Clone returns a copy of p (nil for an empty p).
func (p Pattern[V]) Clone() Pattern[V] {
	if len(p) == 0 {
		return nil
	}
	return append(Pattern[V](nil), p...)
}

// String formats p as "k1=v1,k2=v2" (the --rank-pattern flag's form).
func (p Pattern[V]) String() string {
	parts := make([]string, len(p))
	for i, e := range p {
		parts[i] = fmt.Sprintf("%s=%v", e.Key, e.Value)
	}
	return strings.Join(parts, ",")
}

// MarshalJSON writes p as a JSON object, keys in p's order.
func (p Pattern[V]) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshalNoEscape(e.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.Value)
		if err != nil {
			return nil, fmt.Errorf("pattern key %q: %w", e.Key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func marshalNoEscape(s string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// UnmarshalJSON reads a JSON object (or null) into p, keeping the keys' order. A rank pattern's
// values must be integers (8 or 8.0); an alpha pattern's any numbers.
func (p *Pattern[V]) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		*p = nil
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want an object {\"module pattern\": value, ...}, got %v", tok)
	}
	var out Pattern[V]
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		key := kt.(string) // object keys are strings
		vt, err := dec.Token()
		if err != nil {
			return err
		}
		num, ok := vt.(json.Number)
		if !ok {
			return fmt.Errorf("key %q: want a number, got %v", key, vt)
		}
		v, err := parseValue[V](string(num))
		if err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
		out = append(out, PatternEntry[V]{Key: key, Value: v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	*p = out
	return nil
}

// parseValue parses s as V: an integer (a float with no fraction is accepted, as Python's 8.0) or a float.
func parseValue[V int | float64](s string) (V, error) {
	var zero V
	f, err := parseFloat(s)
	if err != nil {
		return zero, err
	}
	switch any(zero).(type) {
	case int:
		if f != math.Trunc(f) || math.Abs(f) > 1<<31 {
			return zero, fmt.Errorf("want an integer rank, got %s", s)
		}
		return V(int(f)), nil
	}
	return V(f), nil
}

func parseFloat(s string) (float64, error) {
	var f float64
	if _, err := fmt.Sscan(s, &f); err != nil {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	return f, nil
}

// ParsePattern parses the flag form "key=value,key=value" (keys may not contain ',' or '='; use a
// config file for such keys). An empty string is an empty pattern.
func ParsePattern[V int | float64](s string) (Pattern[V], error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out Pattern[V]
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q: want module=value pairs separated by commas (e.g. q_proj=16,v_proj=4)", part)
		}
		x, err := parseValue[V](v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		out = append(out, PatternEntry[V]{Key: k, Value: x})
	}
	return out, nil
}

// MarshalYAML writes p as a mapping in p's order.
func (p Pattern[V]) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, e := range p {
		n.Content = append(n.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: e.Key},
			&yaml.Node{Kind: yaml.ScalarNode, Value: fmt.Sprint(e.Value)})
	}
	return n, nil
}

// UnmarshalYAML reads a mapping into p, keeping the keys' order.
func (p *Pattern[V]) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		*p = nil
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping {module pattern: value}", n.Line)
	}
	var out Pattern[V]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		x, err := parseValue[V](v.Value)
		if err != nil {
			return fmt.Errorf("line %d: key %q: %w", v.Line, k.Value, err)
		}
		out = append(out, PatternEntry[V]{Key: k.Value, Value: x})
	}
	*p = out
	return nil
}
