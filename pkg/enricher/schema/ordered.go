package schema

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// object is a JSON/YAML object whose keys keep the order they were added
// in, so generated documents read top-down (title before properties, fields
// in declaration order) and are byte-for-byte reproducible.
type object []member

type member struct {
	key   string
	value any
}

// set appends key; it is the builder's only verb, so documents read like
// the output they produce.
func (o *object) set(key string, value any) *object {
	*o = append(*o, member{key, value})
	return o
}

// MarshalJSON encodes the members in order, without HTML escaping: schemas
// quote patterns and descriptions with < and >.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshalJSON(m.key)
		if err != nil {
			return nil, err
		}
		v, err := marshalJSON(m.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// MarshalYAML encodes the members in order.
func (o object) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, m := range o {
		var k, v yaml.Node
		k.SetString(m.key)
		if err := v.Encode(m.value); err != nil {
			return nil, fmt.Errorf("%s: %w", m.key, err)
		}
		n.Content = append(n.Content, &k, &v)
	}
	return n, nil
}

// marshalJSON is json.Marshal without HTML escaping and without the
// trailing newline an Encoder adds.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// indentJSON is the checked-in form of a JSON document: two-space indent,
// no HTML escaping, a final newline.
func indentJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
