package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
)

// uuidPattern matches an id as Herald and the portal write it: a canonical,
// lower-case UUID.
const uuidPattern = `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`

// reflectType builds the JSON Schema (draft-07) of a Go data type the way
// encoding/json encodes it. The enricher's data types say the rest in struct
// tags: doc (the description), schema:"uuid" (a canonical UUID) and
// schema:"true" (the only value is true), format (a JSON Schema format). A
// pointer is nullable; omitempty makes a field optional, every other field
// is required. Objects stay open (no additionalProperties: false) so that a
// consumer validating with the v1 schema keeps accepting events after an
// additive change.
func reflectType(t reflect.Type) (object, error) {
	switch {
	case t == reflect.TypeFor[time.Time]():
		return object{{"type", "string"}, {"format", "date-time"}}, nil
	case t.Kind() == reflect.Pointer:
		s, err := reflectType(t.Elem())
		if err != nil {
			return nil, err
		}
		return nullable(s), nil
	}
	switch t.Kind() {
	case reflect.String:
		return object{{"type", "string"}}, nil
	case reflect.Bool:
		return object{{"type", "boolean"}}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return object{{"type", "integer"}}, nil
	case reflect.Float32, reflect.Float64:
		return object{{"type", "number"}}, nil
	case reflect.Slice:
		items, err := reflectType(t.Elem())
		if err != nil {
			return nil, err
		}
		return object{{"type", "array"}, {"items", items}}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%s: map keys must be strings", t)
		}
		s := object{{"type", "object"}}
		if t.Elem().Kind() != reflect.Interface {
			values, err := reflectType(t.Elem())
			if err != nil {
				return nil, err
			}
			s.set("additionalProperties", values)
		}
		return s, nil
	case reflect.Interface:
		return object{}, nil // any JSON value
	case reflect.Struct:
		return reflectStruct(t)
	}
	return nil, fmt.Errorf("%s: no JSON Schema for kind %s", t, t.Kind())
}

func reflectStruct(t reflect.Type) (object, error) {
	var props object
	var required []string
	if err := addFields(t, &props, &required); err != nil {
		return nil, err
	}
	s := object{{"type", "object"}}
	if len(required) > 0 {
		s.set("required", required)
	}
	s.set("properties", props)
	return s, nil
}

// addFields adds t's fields, and those of its embedded structs in place, as
// encoding/json flattens them.
func addFields(t reflect.Type, props *object, required *[]string) error {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			if err := addFields(f.Type, props, required); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		s, err := fieldSchema(f)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t.Name(), f.Name, err)
		}
		props.set(name, s)
		if !strings.Contains(","+opts+",", ",omitempty,") {
			*required = append(*required, name)
		}
	}
	return nil
}

func fieldSchema(f reflect.StructField) (object, error) {
	doc := f.Tag.Get("doc")
	if doc == "" {
		return nil, errors.New("no doc tag: every published field needs a description")
	}
	s, err := reflectType(f.Type)
	if err != nil {
		return nil, err
	}
	out := object{{"description", doc}}
	for _, m := range s {
		out.set(m.key, m.value)
	}
	switch tag := f.Tag.Get("schema"); tag {
	case "":
	case "uuid":
		out.set("pattern", uuidPattern)
	case "true":
		out.set("const", true)
	default:
		return nil, fmt.Errorf("schema tag %q: want uuid or true", tag)
	}
	if format := f.Tag.Get("format"); format != "" && !has(out, "format") {
		out.set("format", format)
	}
	return out, nil
}

// nullable lets s also be null.
func nullable(s object) object {
	out := make(object, 0, len(s))
	for _, m := range s {
		if m.key == "type" {
			m.value = []any{m.value, "null"}
		}
		out = append(out, m)
	}
	return out
}

func has(o object, key string) bool {
	for _, m := range o {
		if m.key == key {
			return true
		}
	}
	return false
}

// orderedJSON decodes a JSON document keeping the order of object keys, so
// examples embedded in a YAML document read like the events themselves.
func orderedJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			o := object{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				o.set(k.(string), v)
			}
			_, err := dec.Token() // '}'
			return o, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token() // ']'
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", tok)
	case json.Number:
		if i, err := tok.Int64(); err == nil {
			return i, nil
		}
		return tok.Float64()
	default:
		return tok, nil
	}
}
