package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Export writes files (as [Generate] returns them) under dir, the
// repository root, and removes files under dir/schemas that are no longer
// generated: that directory holds generated files only. It returns the
// paths it wrote or removed.
func Export(dir string, files map[string][]byte) ([]string, error) {
	stale, err := staleSchemas(dir, files)
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, path := range slices.Sorted(maps.Keys(files)) {
		full := filepath.Join(dir, filepath.FromSlash(path))
		if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, files[path]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return changed, fmt.Errorf("export %s: %w", path, err)
		}
		if err := os.WriteFile(full, files[path], 0o644); err != nil {
			return changed, fmt.Errorf("export %s: %w", path, err)
		}
		changed = append(changed, path)
	}
	for _, path := range stale {
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(path))); err != nil {
			return changed, fmt.Errorf("remove stale %s: %w", path, err)
		}
		changed = append(changed, path)
	}
	return changed, nil
}

// Diff returns the paths under dir that differ from files: missing, changed,
// or (under dir/schemas) no longer generated. Empty means up to date.
func Diff(dir string, files map[string][]byte) ([]string, error) {
	var out []string
	for _, path := range slices.Sorted(maps.Keys(files)) {
		old, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			out = append(out, path+" (missing)")
		case err != nil:
			return nil, fmt.Errorf("compare %s: %w", path, err)
		case !bytes.Equal(old, files[path]):
			out = append(out, path+" (differs)")
		}
	}
	stale, err := staleSchemas(dir, files)
	if err != nil {
		return nil, err
	}
	for _, path := range stale {
		out = append(out, path+" (no longer generated)")
	}
	return out, nil
}

// staleSchemas lists the files under dir/schemas that files does not hold.
func staleSchemas(dir string, files map[string][]byte) ([]string, error) {
	root := filepath.Join(dir, SchemaDir)
	var stale []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); files[rel] == nil && strings.HasSuffix(rel, ".json") {
			stale = append(stale, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	return stale, nil
}
