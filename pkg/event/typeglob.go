package event

import (
	"fmt"
	"path"
)

// MatchType reports whether eventType matches one of globs, in path.Match
// syntax ("io.herald.portal.data_product.*"). No globs match every type:
// routes and webhook endpoints without a type filter take everything.
func MatchType(globs []string, eventType string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, eventType); ok {
			return true
		}
	}
	return false
}

// ValidateTypeGlobs returns an error naming the first glob that is empty or
// malformed. MatchType treats a malformed glob as matching nothing, so
// filters are checked when they are configured, not when events arrive.
func ValidateTypeGlobs(globs []string) error {
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return fmt.Errorf("invalid type glob %q", g)
		}
	}
	return nil
}
