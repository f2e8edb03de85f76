package schema_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/enricher/schema"
	"github.com/heraldhq/herald/pkg/event"
)

// repoRoot is where the checked-in generated files live.
const repoRoot = "../../.."

func generate(t *testing.T) (map[string][]byte, map[string]event.Event) {
	t.Helper()
	e := enricher.New()
	examples, err := portalsample.Examples(context.Background(), e)
	if err != nil {
		t.Fatalf("examples: %v", err)
	}
	files, err := schema.Generate(schema.Options{Rules: e.Rules(), Examples: examples})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return files, examples
}

// compiler loads every generated schema at the URL it is published at, so
// their relative references resolve as they will for consumers. Compiling
// checks each schema against the draft-07 meta-schema.
func compiler(t *testing.T, files map[string][]byte) *jsonschema.Compiler {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	for path, b := range files {
		rel, ok := strings.CutPrefix(path, schema.SchemaDir+"/")
		if !ok {
			continue
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := c.AddResource(enricher.DefaultSchemaBase+rel, doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return c
}

func validate(t *testing.T, c *jsonschema.Compiler, url string, instance []byte) error {
	t.Helper()
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile %s: %v", url, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(instance))
	if err != nil {
		t.Fatalf("instance for %s: %v", url, err)
	}
	return sch.Validate(inst)
}

func TestSchemasCompileAndExamplesValidate(t *testing.T) {
	files, examples := generate(t)
	c := compiler(t, files)
	types := enricher.DefaultRules().EventTypes()
	if len(types) != 20 {
		t.Errorf("%d event types, want 20", len(types))
	}
	for _, et := range types {
		ev := examples[et.Type]
		payload, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, c, enricher.DefaultSchemaBase+et.Type+"/v1.cloudevent.json", payload); err != nil {
			t.Errorf("example %s does not validate as a CloudEvent: %v", et.Type, err)
		}
		if err := validate(t, c, ev.DataSchema, ev.Data); err != nil {
			t.Errorf("example %s: data does not validate against its dataschema %s: %v", et.Type, ev.DataSchema, err)
		}
	}
}

func TestSchemasRejectWrongEvents(t *testing.T) {
	files, examples := generate(t)
	c := compiler(t, files)
	typ := enricher.TypePrefix + "input_port.approved"
	good := examples[typ]
	url := enricher.DefaultSchemaBase + typ + "/v1.cloudevent.json"
	for name, mutate := range map[string]func(*event.Event){
		"other type":           func(ev *event.Event) { ev.Type = enricher.TypePrefix + "input_port.denied" },
		"subject not an input": func(ev *event.Event) { ev.Subject = "data_products/" + strings.Repeat("0", 8) },
		"no partition key":     func(ev *event.Event) { ev.PartitionKey = "" },
		"data without status": func(ev *event.Event) {
			var m map[string]any
			_ = json.Unmarshal(ev.Data, &m)
			delete(m, "status")
			ev.Data, _ = json.Marshal(m)
		},
		"upper-case id in data": func(ev *event.Event) {
			ev.Data = bytes.Replace(ev.Data, []byte(`"id":"40000000`), []byte(`"id":"4000000A`), 1)
		},
	} {
		ev := good
		mutate(&ev)
		payload, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if validate(t, c, url, payload) == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
	}
	// Open content: an additive change must not break v1 consumers.
	ev := good
	ev.Data = bytes.Replace(ev.Data, []byte(`{`), []byte(`{"a_new_field":1,`), 1)
	payload, _ := ev.MarshalJSON()
	if err := validate(t, c, url, payload); err != nil {
		t.Errorf("an extra field is rejected: %v", err)
	}
}

// The generated files are checked in; this fails until they match.
func TestCheckedInFilesAreUpToDate(t *testing.T) {
	files, _ := generate(t)
	diff, err := schema.Diff(repoRoot, files)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Errorf("generated files are out of date; run `go run ./cmd/herald schema export` and commit the result:\n  %s",
			strings.Join(diff, "\n  "))
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, _ := generate(t)
	b, _ := generate(t)
	for path := range a {
		if !bytes.Equal(a[path], b[path]) {
			t.Errorf("%s differs between two runs", path)
		}
	}
}

func TestGenerateNeedsAnExampleOfEveryType(t *testing.T) {
	_, examples := generate(t)
	delete(examples, enricher.TypePrefix+"team_member.removed")
	_, err := schema.Generate(schema.Options{Examples: examples})
	if !errors.Is(err, schema.ErrNoExample) || !strings.Contains(err.Error(), "team_member.removed") {
		t.Errorf("err = %v, want ErrNoExample naming team_member.removed", err)
	}
}

// The AsyncAPI 3.0 JSON Schema is not available offline (only the Go module
// proxy is), so the document is checked structurally: version, every
// channel and operation, and every reference resolving.
func TestAsyncAPIDocument(t *testing.T) {
	files, _ := generate(t)
	raw := files[schema.AsyncAPIDoc]
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("not YAML: %v", err)
	}
	if doc["asyncapi"] != "3.0.0" {
		t.Errorf("asyncapi = %v, want 3.0.0", doc["asyncapi"])
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] != "1.0.0" {
		t.Errorf("info = %v", info)
	}
	channels, _ := doc["channels"].(map[string]any)
	operations, _ := doc["operations"].(map[string]any)
	messages, _ := doc["components"].(map[string]any)["messages"].(map[string]any)
	types := enricher.DefaultRules().EventTypes()
	if len(messages) != len(types) {
		t.Errorf("%d messages, want one per event type (%d)", len(messages), len(types))
	}
	for _, et := range types {
		key := et.Entity + "." + et.Verb
		ch, ok := channels["nats."+key].(map[string]any)
		if !ok || ch["address"] != "herald."+et.Type {
			t.Errorf("NATS channel of %s: %v", et.Type, ch)
		}
		if _, ok := operations["send.nats."+key]; !ok {
			t.Errorf("no operation sends %s on NATS", et.Type)
		}
		msg, _ := messages[key].(map[string]any)
		if msg["name"] != et.Type || len(msg["examples"].([]any)) != 1 {
			t.Errorf("message %s: %v", key, msg)
		}
		schemaRef := msg["payload"].(map[string]any)["schema"].(map[string]any)["$ref"].(string)
		if _, ok := files[strings.TrimPrefix(schemaRef, "../")]; !ok {
			t.Errorf("message %s: payload schema %s is not generated", key, schemaRef)
		}
	}
	for _, id := range []string{"sqs", "servicebus", "webhook"} {
		ch, ok := channels[id].(map[string]any)
		if !ok {
			t.Errorf("no %s channel", id)
			continue
		}
		if n := len(ch["messages"].(map[string]any)); n != len(types) {
			t.Errorf("%s channel carries %d messages, want %d", id, n, len(types))
		}
		if op, _ := operations["send."+id].(map[string]any); op["action"] != "send" {
			t.Errorf("operation send.%s: %v", id, op)
		}
	}
	if len(channels) != len(types)+3 || len(operations) != len(types)+3 {
		t.Errorf("%d channels and %d operations, want %d each", len(channels), len(operations), len(types)+3)
	}
	for _, op := range operations {
		if op.(map[string]any)["action"] != "send" {
			t.Errorf("operation %v: Herald only sends", op)
		}
	}
	// Every local reference resolves.
	var refs []string
	collectRefs(doc, &refs)
	for _, ref := range refs {
		ptr, ok := strings.CutPrefix(ref, "#/")
		if !ok {
			continue
		}
		var node any = doc
		for _, part := range strings.Split(ptr, "/") {
			m, _ := node.(map[string]any)
			node = m[part]
		}
		if node == nil {
			t.Errorf("$ref %s does not resolve", ref)
		}
	}
	if !slices.ContainsFunc(refs, func(r string) bool { return strings.HasPrefix(r, "#/channels/sqs/messages/") }) {
		t.Error("no operation references the SQS channel's messages")
	}
}

func collectRefs(node any, out *[]string) {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" {
				*out = append(*out, s)
			}
			collectRefs(v, out)
		}
	case []any:
		for _, v := range n {
			collectRefs(v, out)
		}
	}
}

func TestExportWritesAndRemovesStale(t *testing.T) {
	files, _ := generate(t)
	dir := t.TempDir()
	stale := filepath.Join(dir, "schemas", "io.herald.portal.gone.deleted", "v1.json")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	diff, err := schema.Diff(dir, files)
	if err != nil || len(diff) != len(files)+1 {
		t.Fatalf("Diff on a stale dir: %d entries (err %v), want %d", len(diff), err, len(files)+1)
	}
	if _, err := schema.Export(dir, files); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale schema kept: %v", err)
	}
	if diff, err := schema.Diff(dir, files); err != nil || len(diff) != 0 {
		t.Errorf("after Export: diff %v, err %v", diff, err)
	}
	changed, err := schema.Export(dir, files)
	if err != nil || len(changed) != 0 {
		t.Errorf("second Export changed %v (err %v), want nothing", changed, err)
	}
}
