package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The checked-in schemas, AsyncAPI document and catalogue are what `herald
// schema export` generates; this fails until they are regenerated.
func TestSchemaExportCheckedInIsUpToDate(t *testing.T) {
	res := herald(context.Background(), t, nil, "schema", "export", "--check", "--dir", "../..")
	if res.code != exitOK {
		t.Fatalf("generated files are out of date: run `go run ./cmd/herald schema export` and commit the result\n%s", res.stderr)
	}
}

func TestSchemaExport(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if res := herald(ctx, t, nil, "schema", "export", "--check", "--dir", dir); res.code != exitError ||
		!strings.Contains(res.stderr, "go run ./cmd/herald schema export") || !strings.Contains(res.stderr, "docs/events.md (missing)") {
		t.Fatalf("--check on an empty dir: %+v", res)
	}
	res := herald(ctx, t, nil, "schema", "export", "--dir", dir)
	if res.code != exitOK || !strings.Contains(res.stdout, "wrote schemas/io.herald.portal.input_port.approved/v1.json") {
		t.Fatalf("export: %+v", res)
	}
	for _, f := range []string{"docs/asyncapi.yaml", "docs/events.md", "schemas/cloudevent/v1.json",
		"schemas/io.herald.portal.team_member.removed/v1.cloudevent.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if res := herald(ctx, t, nil, "schema", "export", "--check", "--dir", dir); res.code != exitOK {
		t.Fatalf("--check after export: %+v", res)
	}
	// A hand edit is caught.
	md := filepath.Join(dir, "docs", "events.md")
	if err := os.WriteFile(md, []byte("edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := herald(ctx, t, nil, "schema", "export", "--check", "--dir", dir); res.code != exitError ||
		!strings.Contains(res.stderr, "docs/events.md (differs)") {
		t.Fatalf("--check after a hand edit: %+v", res)
	}
}

// --base is the enricher's schema base: the schemas' $id and the examples'
// dataschema move with it, so that they still agree.
func TestSchemaExportBase(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, base, wantID string
		wantCode           int
	}{
		{"own base", "https://schemas.example.com/herald",
			"https://schemas.example.com/herald/io.herald.portal.data_product.created/v1.json", exitOK},
		{"not absolute", "schemas.example.com/herald", "", exitError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			res := herald(ctx, t, nil, "schema", "export", "--dir", dir, "--base", tc.base)
			if res.code != tc.wantCode {
				t.Fatalf("export --base %s: %+v", tc.base, res)
			}
			if tc.wantCode != exitOK {
				if !strings.Contains(res.stderr, "--base") {
					t.Errorf("the error does not name --base: %s", res.stderr)
				}
				return
			}
			b, err := os.ReadFile(filepath.Join(dir, "schemas", "io.herald.portal.data_product.created", "v1.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), `"$id": "`+tc.wantID+`"`) {
				t.Errorf("the data schema's $id is not %s:\n%.300s", tc.wantID, b)
			}
			md, err := os.ReadFile(filepath.Join(dir, "docs", "events.md"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(md), `"dataschema": "`+tc.wantID+`"`) {
				t.Errorf("no example in docs/events.md names the dataschema %s", tc.wantID)
			}
		})
	}
}
