package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/enricher/schema"
)

// errOutdated is returned by `schema export --check` when the checked-in
// files differ from the generated ones.
var errOutdated = errors.New("generated files are out of date; run `go run ./cmd/herald schema export`")

func schemaCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "The published contract of the portal events: JSON Schemas, AsyncAPI document, catalogue",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(schemaExportCmd(e))
	return cmd
}

func schemaExportCmd(e env) *cobra.Command {
	var dir, base string
	var check bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write schemas/, docs/asyncapi.yaml and docs/events.md from the enricher's types (--check: only compare)",
		Long: "Generate the JSON Schema of every event type (schemas/<type>/v1.json, the file each event's\n" +
			"dataschema names, and v1.cloudevent.json for the whole event), an AsyncAPI 3.0 document with the\n" +
			"channels of every adapter (docs/asyncapi.yaml) and the catalogue (docs/events.md), whose examples\n" +
			"come from running the enricher over the portal sample. --dir is the repository root. Every schema's\n" +
			"$id is its URL under --base, the URL events' dataschema names; the AsyncAPI document embeds the\n" +
			"schemas, so it stands alone.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := generateContract(cmd, base)
			if err != nil {
				return err
			}
			if check {
				diff, err := schema.Diff(dir, files)
				if err != nil {
					return err
				}
				if len(diff) > 0 {
					return fmt.Errorf("%w:\n  %s", errOutdated, strings.Join(diff, "\n  "))
				}
				_, err = fmt.Fprintf(e.stdout, "%d generated files are up to date\n", len(files))
				return err
			}
			changed, err := schema.Export(dir, files)
			if err != nil {
				return err
			}
			for _, path := range changed {
				fmt.Fprintf(e.stdout, "wrote %s\n", path)
			}
			_, err = fmt.Fprintf(e.stdout, "%d generated files, %d changed\n", len(files), len(changed))
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "repository root to write schemas/ and docs/ under")
	cmd.Flags().StringVar(&base, "base", enricher.DefaultSchemaBase,
		"URL the schemas are published at, the enricher's schema base: every $id and every example's dataschema start with it")
	cmd.Flags().BoolVar(&check, "check", false, "write nothing; fail if the files under --dir differ from the generated ones")
	return cmd
}

// generateContract generates the files with the built-in catalogue and
// examples enriched from the portal sample by an enricher with the schema
// base base, so that the examples' dataschema and the schemas' $id agree.
func generateContract(cmd *cobra.Command, base string) (map[string][]byte, error) {
	if u, err := url.Parse(base); err != nil || !u.IsAbs() {
		return nil, fmt.Errorf("--base %q: want an absolute URL, the one events' dataschema starts with", base)
	}
	e := enricher.New(enricher.WithSchemaBase(base), portalsample.Replay())
	examples, err := portalsample.Examples(cmd.Context(), e)
	if err != nil {
		return nil, fmt.Errorf("examples: %w", err)
	}
	return schema.Generate(schema.Options{Rules: e.Rules(), Examples: examples, Base: base})
}
