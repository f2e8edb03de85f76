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
	"time"

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
	e := enricher.New(portalsample.Replay())
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

// compiler loads every generated schema under schemas/.
func compiler(t *testing.T, files map[string][]byte) *jsonschema.Compiler {
	t.Helper()
	schemas := map[string][]byte{}
	for path, b := range files {
		if strings.HasPrefix(path, schema.SchemaDir+"/") {
			schemas[path] = b
		}
	}
	return compilerByID(t, schemas)
}

// compilerByID registers each schema of files by its own $id and nothing
// else, as a consumer's validator would, and can fetch nothing, then
// compiles every one: a schema without $id, or a reference that does not
// resolve among the files by their $ids, fails. Compiling checks each
// schema against the draft-07 meta-schema its $schema names.
func compilerByID(t *testing.T, files map[string][]byte) *jsonschema.Compiler {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	// No scheme has a loader, so any reference outside files fails.
	c.UseLoader(jsonschema.SchemeURLLoader{})
	ids := map[string]string{} // path by $id
	for path, b := range files {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id == "" {
			t.Fatalf("%s has no $id", path)
		}
		if other, ok := ids[id]; ok {
			t.Fatalf("%s and %s have the same $id %s", path, other, id)
		}
		ids[id] = path
		if err := c.AddResource(id, doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	for id, path := range ids {
		if _, err := c.Compile(id); err != nil {
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
	if len(types) != 23 {
		t.Errorf("%d event types, want 23", len(types))
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

// Each schema's $id is the URL it is published at: the one events'
// dataschema names for the data schema, with the CloudEvent and envelope
// schemas beside it.
func TestSchemaIDsAreThePublishedURLs(t *testing.T) {
	for _, tc := range []struct {
		name, base, wantBase string
	}{
		{"default base", "", enricher.DefaultSchemaBase},
		{"own base", "https://schemas.example.com/herald", "https://schemas.example.com/herald/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []enricher.Option{portalsample.Replay()}
			if tc.base != "" {
				opts = append(opts, enricher.WithSchemaBase(tc.base))
			}
			e := enricher.New(opts...)
			examples, err := portalsample.Examples(context.Background(), e)
			if err != nil {
				t.Fatal(err)
			}
			files, err := schema.Generate(schema.Options{Examples: examples, Base: tc.base})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for path, b := range files {
				rel, ok := strings.CutPrefix(path, schema.SchemaDir+"/")
				if !ok {
					continue
				}
				n++
				var doc struct {
					ID string `json:"$id"`
				}
				if err := json.Unmarshal(b, &doc); err != nil {
					t.Fatal(err)
				}
				if want := tc.wantBase + rel; doc.ID != want {
					t.Errorf("%s: $id %q, want %q", path, doc.ID, want)
				}
			}
			if want := 1 + 2*len(enricher.DefaultRules().EventTypes()); n != want {
				t.Errorf("%d schemas, want %d", n, want)
			}
			for typ, ex := range examples {
				if want := e.SchemaURL(typ); ex.DataSchema != want || !strings.HasPrefix(want, tc.wantBase) {
					t.Errorf("example %s: dataschema %s, want %s under %s", typ, ex.DataSchema, want, tc.wantBase)
				}
			}
			// The schemas validate the examples by $id alone.
			c := compiler(t, files)
			for typ, ex := range examples {
				if err := validate(t, c, ex.DataSchema, ex.Data); err != nil {
					t.Errorf("example %s: %v", typ, err)
				}
			}
		})
	}
}

// What `herald schema export` writes is enough on its own: every schema in
// the folder, registered by its $id and nothing else, compiles, and every
// event of the golden files (the enricher's output over the portal
// fixtures) validates, whole against its type's CloudEvent schema and its
// data against the schema its dataschema names.
func TestExportedSchemasValidateGoldenEvents(t *testing.T) {
	files, _ := generate(t)
	dir := t.TempDir()
	if _, err := schema.Export(dir, files); err != nil {
		t.Fatal(err)
	}
	exported := map[string][]byte{}
	root := filepath.Join(dir, schema.SchemaDir)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		exported[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c := compilerByID(t, exported)

	goldens, err := filepath.Glob(filepath.Join("..", "testdata", "*.golden.json"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden files (%v)", err)
	}
	for _, path := range goldens {
		evs := goldenEvents(t, path)
		if len(evs) == 0 {
			t.Errorf("%s holds no event", path)
		}
		for i, ev := range evs {
			payload, err := ev.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			whole := strings.TrimSuffix(ev.DataSchema, ".json") + ".cloudevent.json"
			if err := validate(t, c, whole, payload); err != nil {
				t.Errorf("%s event %d (%s): not a valid CloudEvent of its type: %v", path, i, ev.Type, err)
			}
			if err := validate(t, c, ev.DataSchema, ev.Data); err != nil {
				t.Errorf("%s event %d (%s): data does not validate against %s: %v", path, i, ev.Type, ev.DataSchema, err)
			}
		}
	}
}

// goldenEvents reads the events of a golden file as Herald emits them. The
// file leaves out what is the same in every event or fresh on every run (id,
// specversion, source, datacontenttype); event.New puts them back as the
// enricher does.
func goldenEvents(t *testing.T, path string) []event.Event {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var records []struct {
		Events []struct {
			Type         string          `json:"type"`
			Subject      string          `json:"subject"`
			Time         time.Time       `json:"time"`
			PartitionKey string          `json:"partitionkey"`
			DataSchema   string          `json:"dataschema"`
			Data         json.RawMessage `json:"data"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &records); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []event.Event
	for _, rec := range records {
		for _, g := range rec.Events {
			ev, err := event.New(g.Type, enricher.DefaultSource, g.Data, event.WithSubject(g.Subject),
				event.WithTime(g.Time), event.WithPartitionKey(g.PartitionKey), event.WithDataSchema(g.DataSchema))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out = append(out, ev)
		}
	}
	return out
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
		payloadRef, _ := msg["payload"].(map[string]any)["$ref"].(string)
		if want := "#/components/schemas/" + et.Type + ".v1.cloudevent"; payloadRef != want {
			t.Errorf("message %s: payload %s, want %s", key, payloadRef, want)
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
	// Every reference is a local one, so that the document parses alone,
	// from any working directory, and resolves.
	var refs []string
	collectRefs(doc, &refs)
	for _, ref := range refs {
		ptr, ok := strings.CutPrefix(ref, "#/")
		if !ok {
			t.Errorf("$ref %s: not inside the document", ref)
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

// The document's own copies of the schemas are draft-07 JSON Schemas that
// validate its examples, by JSON pointer inside the document, and reject a
// wrong event.
func TestAsyncAPISchemasValidateTheExamples(t *testing.T) {
	files, _ := generate(t)
	var doc map[string]any
	if err := yaml.Unmarshal(files[schema.AsyncAPIDoc], &doc); err != nil {
		t.Fatal(err)
	}
	// Through JSON so that numbers are what a JSON Schema validator expects.
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	const url = "urn:herald:asyncapi"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	c.UseLoader(jsonschema.SchemeURLLoader{})
	if err := c.AddResource(url, inst); err != nil {
		t.Fatal(err)
	}
	components := doc["components"].(map[string]any)
	schemas := components["schemas"].(map[string]any)
	if want := 1 + 2*len(enricher.DefaultRules().EventTypes()); len(schemas) != want {
		t.Errorf("%d schemas in components, want %d", len(schemas), want)
	}
	for key, s := range schemas {
		s := s.(map[string]any)
		if s["schemaFormat"] != "application/schema+json;version=draft-07" {
			t.Errorf("schema %s: schemaFormat %v", key, s["schemaFormat"])
		}
		if _, ok := s["schema"].(map[string]any)["$id"]; ok {
			t.Errorf("schema %s has an $id: its pointers would resolve in the published file", key)
		}
	}
	for key, m := range components["messages"].(map[string]any) {
		m := m.(map[string]any)
		ptr := strings.TrimPrefix(m["payload"].(map[string]any)["$ref"].(string), "#")
		sch, err := c.Compile(url + "#" + ptr + "/schema")
		if err != nil {
			t.Fatalf("message %s: %v", key, err)
		}
		example, err := json.Marshal(m["examples"].([]any)[0].(map[string]any)["payload"])
		if err != nil {
			t.Fatal(err)
		}
		ex, err := jsonschema.UnmarshalJSON(bytes.NewReader(example))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(ex); err != nil {
			t.Errorf("message %s: the example does not validate: %v", key, err)
		}
		ex.(map[string]any)["type"] = "io.herald.portal.other.thing"
		if sch.Validate(ex) == nil {
			t.Errorf("message %s: the payload schema accepts an event of another type", key)
		}
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
