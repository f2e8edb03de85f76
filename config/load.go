package config

import (
	"errors"
	"fmt"
	"io/fs"
	mapkeys "maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/maps"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/heraldhq/herald/internal/redact"
)

const envPrefix = "HERALD_"

// Load returns [Default], overridden by the YAML file at path (skipped when
// path is ""), overridden by the HERALD_* variables in environ (entries of
// the form "NAME=value", as from os.Environ), and then validated. It reports
// every problem it finds, joined.
func Load(path string, environ []string) (Config, error) { return LoadFor(path, environ, UseAll) }

// LoadFor is [Load] for a command that reads only the settings of use: the
// file and the environment are read as strictly (an unknown key is still an
// error), but only those settings are validated.
func LoadFor(path string, environ []string, use Use) (Config, error) {
	cfg := Default()
	var fileErr error
	if path != "" {
		fileErr = applyFile(&cfg, path)
	}
	if err := errors.Join(fileErr, applyEnv(&cfg, environ)); err != nil {
		// Validating values that failed to load would only add noise.
		return Config{}, err
	}
	if err := cfg.ValidateFor(use); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Keys returns every setting's dotted key, in the order of the Config struct.
func Keys() []string {
	var keys []string
	for _, s := range settings() {
		keys = append(keys, s.key)
	}
	return keys
}

// EnvName returns the environment variable that overrides key:
// "relay.batch_size" → "HERALD_RELAY_BATCH_SIZE".
func EnvName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// ignoredEnv reports whether name is a HERALD_* variable that is not a
// setting but is used by tests and CI, and so is not an error.
func ignoredEnv(name string) bool {
	return name == "HERALD_REQUIRE_SERVICES" || strings.HasPrefix(name, "HERALD_TEST_")
}

func applyFile(cfg *Config, path string) error {
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		if _, unreadable := errors.AsType[*fs.PathError](err); unreadable {
			return fmt.Errorf("config %s: %w", path, err)
		}
		return &invalidError{msg: fmt.Sprintf("config %s: %v", path, err), cause: err}
	}
	byKey, sections := index()
	var errs []error
	for _, err := range applyKeys(reflect.ValueOf(cfg).Elem(), "", k.All(), byKey, sections) {
		errs = append(errs, fmt.Errorf("config %s: %w", path, err))
	}
	return errors.Join(errs...)
}

// applyKeys sets root's settings from flat, a config file's mapping with
// dotted keys, in key order. prefix goes before every key in errors
// ("destinations[0]."), which name each key that is unknown or has a bad
// value.
func applyKeys(root reflect.Value, prefix string, flat map[string]any, byKey map[string]setting, sections map[string]bool) []error {
	var errs []error
	for _, key := range slices.Sorted(mapkeys.Keys(flat)) {
		raw := flat[key]
		s, known := byKey[key]
		switch {
		case known && raw == nil:
			// "batch_size:" with no value leaves the default in place.
		case known:
			if err := s.setIn(root, prefix, raw); err != nil {
				errs = append(errs, err)
			}
		case sections[key]:
			// A section whose settings are all commented out is empty or null.
			if m, isMap := raw.(map[string]any); raw != nil && (!isMap || len(m) > 0) {
				errs = append(errs, &FieldError{Key: prefix + key, Reason: fmt.Sprintf("must be a mapping of settings (got %s)", describe(raw))})
			}
		default:
			errs = append(errs, &invalidError{msg: fmt.Sprintf("unknown key %q", prefix+key)})
		}
	}
	return errs
}

func applyEnv(cfg *Config, environ []string) error {
	byEnv := make(map[string]setting)
	for _, s := range settings() {
		byEnv[EnvName(s.key)] = s
	}
	var errs []error
	names := make(map[string]string) // key → the variable that set it
	k := koanf.New(".")
	err := k.Load(env.Provider(".", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			s, ok := byEnv[name]
			if !ok {
				if !ignoredEnv(name) {
					errs = append(errs, &invalidError{msg: fmt.Sprintf("env %s: unknown setting", name)})
				}
				return "", nil
			}
			names[s.key] = name
			return s.key, value
		},
	}), nil)
	if err != nil {
		return fmt.Errorf("read environment: %w", err)
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	byKey, _ := index()
	for _, key := range k.Keys() {
		if err := byKey[key].set(cfg, k.Get(key)); err != nil {
			errs = append(errs, fmt.Errorf("env %s: %w", names[key], err))
		}
	}
	return errors.Join(errs...)
}

// invalidError is a problem with the configuration that is not one
// setting's value: a key or HERALD_* variable that names no setting, or a
// file that is not YAML.
type invalidError struct {
	msg   string
	cause error // the YAML parser's error, if any
}

func (e *invalidError) Error() string { return e.msg }

func (e *invalidError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.cause}
}

// setting is one leaf of Config: its dotted key and where it sits.
type setting struct {
	key   string
	index []int
	typ   reflect.Type
}

// settings derives every setting from Config's koanf tags, so the struct is
// the one list of keys, for the file and the environment alike.
func settings() []setting { return settingsOf(reflect.TypeFor[Config]()) }

// settingsOf lists the settings of a struct type. A list of structs, such as
// destinations, is one setting whose elements have settings of their own.
func settingsOf(root reflect.Type) []setting {
	var out []setting
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" {
				panic(fmt.Sprintf("config: field %s.%s has no koanf tag", t.Name(), f.Name))
			}
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+tag+".", idx)
				continue
			}
			out = append(out, setting{key: prefix + tag, index: idx, typ: f.Type})
		}
	}
	walk(root, "", nil)
	return out
}

// index returns Config's settings by key, and the keys of the sections
// that hold them ("relay", "nats", "nats.tls", ...).
func index() (map[string]setting, map[string]bool) { return indexOf(reflect.TypeFor[Config]()) }

// indexOf is index for any struct of settings, such as a list element.
func indexOf(t reflect.Type) (map[string]setting, map[string]bool) {
	byKey := make(map[string]setting)
	sections := make(map[string]bool)
	for _, s := range settingsOf(t) {
		byKey[s.key] = s
		for k := s.key; strings.Contains(k, "."); {
			k = k[:strings.LastIndex(k, ".")]
			sections[k] = true
		}
	}
	return byKey, sections
}

func (s setting) set(cfg *Config, raw any) error {
	return s.setIn(reflect.ValueOf(cfg).Elem(), "", raw)
}

// setIn sets the setting in root, a struct value; prefix goes before the
// key in errors ("destinations[0].").
func (s setting) setIn(root reflect.Value, prefix string, raw any) error {
	if s.typ.Kind() == reflect.Slice && s.typ.Elem().Kind() == reflect.Struct {
		v, err := decodeList(raw, s.typ, prefix+s.key)
		if err != nil {
			return err
		}
		root.FieldByIndex(s.index).Set(v)
		return nil
	}
	v, err := decode(raw, s.typ)
	if err != nil && secretKeys[s.key] {
		return &FieldError{Key: prefix + s.key, Reason: fmt.Sprintf("must be %s (the value is not shown: it is a secret)", typeName(s.typ))}
	}
	if err != nil {
		return &FieldError{Key: prefix + s.key, Reason: err.Error()}
	}
	if v.Kind() == reflect.Slice && v.Len() == 0 {
		return nil // "[]" is the same as unset: the default stays
	}
	root.FieldByIndex(s.index).Set(v)
	return nil
}

// decodeList reads a list of mappings, such as destinations, into a slice of
// structs: each element starts from its defaults and takes its keys as
// strictly as the top level does. Errors name the element:
// "destinations[1].webhook.url".
func decodeList(raw any, t reflect.Type, key string) (reflect.Value, error) {
	items, ok := raw.([]any)
	if !ok {
		return reflect.Value{}, &FieldError{Key: key, Reason: fmt.Sprintf(
			"must be a list of mappings in the config file (got %s); it cannot be set from the environment", describe(raw))}
	}
	byKey, sections := indexOf(t.Elem())
	out := reflect.Zero(t) // "destinations: []" is the default, nil
	var errs []error
	for i, item := range items {
		prefix := fmt.Sprintf("%s[%d].", key, i)
		m, ok := item.(map[string]any)
		if !ok {
			errs = append(errs, &FieldError{Key: strings.TrimSuffix(prefix, "."), Reason: fmt.Sprintf("must be a mapping (got %s)", describe(item))})
			continue
		}
		elem := reflect.New(t.Elem()).Elem()
		elem.Set(elementDefault(t.Elem()))
		flat, _ := maps.Flatten(m, nil, ".")
		errs = append(errs, applyKeys(elem, prefix, flat, byKey, sections)...)
		out = reflect.Append(out, elem)
	}
	return out, errors.Join(errs...)
}

// elementDefault is the value an element of a list of settings starts from.
func elementDefault(t reflect.Type) reflect.Value {
	if t == reflect.TypeFor[Destination]() {
		return reflect.ValueOf(defaultDestination())
	}
	return reflect.Zero(t)
}

// decode converts raw, a value from the YAML parser or an environment
// string, to a value of type t. It is strict: no number is read as a
// duration, and no fraction as an int.
func decode(raw any, t reflect.Type) (reflect.Value, error) {
	bad := func() (reflect.Value, error) {
		return reflect.Value{}, fmt.Errorf("cannot parse %s as %s", describe(raw), typeName(t))
	}
	if t == reflect.TypeFor[time.Duration]() {
		s, ok := raw.(string)
		if !ok {
			return reflect.Value{}, fmt.Errorf("cannot parse %s as a duration: give a unit, e.g. \"500ms\" or \"2m\"", describe(raw))
		}
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return reflect.Value{}, fmt.Errorf("cannot parse %q as a duration, e.g. \"500ms\" or \"2m\"", s)
		}
		return reflect.ValueOf(d), nil
	}
	switch t.Kind() {
	case reflect.String:
		if s, ok := raw.(string); ok {
			return reflect.ValueOf(s), nil
		}
	case reflect.Bool:
		switch v := raw.(type) {
		case bool:
			return reflect.ValueOf(v), nil
		case string:
			if b, err := strconv.ParseBool(strings.TrimSpace(v)); err == nil {
				return reflect.ValueOf(b), nil
			}
		}
	case reflect.Int:
		switch v := raw.(type) {
		case int:
			return reflect.ValueOf(v), nil
		case string:
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return reflect.ValueOf(n), nil
			}
		}
	case reflect.Float64:
		switch v := raw.(type) {
		case float64:
			return reflect.ValueOf(v), nil
		case int: // YAML reads 1 as an int
			return reflect.ValueOf(float64(v)), nil
		case string:
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return reflect.ValueOf(f), nil
			}
		}
	case reflect.Slice:
		// Lists of strings or durations: each element decoded as a
		// setting of that type would be.
		elem := t.Elem()
		if elem.Kind() != reflect.String && elem != reflect.TypeFor[time.Duration]() {
			break
		}
		var items []any
		switch v := raw.(type) {
		case string: // from the environment: comma-separated
			if strings.TrimSpace(v) == "" {
				return reflect.Zero(t), nil
			}
			for _, p := range strings.Split(v, ",") {
				items = append(items, strings.TrimSpace(p))
			}
		case []any:
			items = v
		default:
			return bad()
		}
		if len(items) == 0 {
			return reflect.Zero(t), nil // "[]" is the same as unset
		}
		out := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			ev, err := decode(item, elem)
			if err != nil {
				return reflect.Value{}, fmt.Errorf("entry %d: %w", i+1, err)
			}
			out.Index(i).Set(ev)
		}
		return out, nil
	}
	return bad()
}

// describe shows a value that could not be loaded, with anything in it that
// could be a URL's credentials masked.
func describe(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(redact.URL(s))
	}
	return fmt.Sprintf("%v", masked(v))
}

func masked(v any) any {
	switch x := v.(type) {
	case string:
		return redact.URL(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = masked(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = masked(e)
		}
		return out
	}
	return v
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "a list of mappings"
		}
		if t.Elem() == reflect.TypeFor[time.Duration]() {
			return "a list of durations"
		}
		return "a list of strings"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a bool (true or false)"
	case reflect.Float64:
		return "a number"
	default:
		return t.Kind().String()
	}
}
