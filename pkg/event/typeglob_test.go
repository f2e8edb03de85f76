package event_test

import (
	"testing"

	"github.com/heraldhq/herald/pkg/event"
)

func TestMatchType(t *testing.T) {
	for _, tc := range []struct {
		globs []string
		typ   string
		want  bool
	}{
		{nil, "io.herald.portal.data_product.created", true},
		{[]string{"io.herald.portal.data_product.*"}, "io.herald.portal.data_product.created", true},
		{[]string{"io.herald.portal.input_port.*"}, "io.herald.portal.data_product.created", false},
		{[]string{"io.herald.portal.*"}, "io.herald.portal.data_product.created", true}, // '*' crosses dots: there is no '/'
		{[]string{"a", "io.herald.*.created"}, "io.herald.x.created", true},
		{[]string{"io.[x"}, "io.[x", false}, // malformed matches nothing; ValidateTypeGlobs refuses it
	} {
		if got := event.MatchType(tc.globs, tc.typ); got != tc.want {
			t.Errorf("MatchType(%q, %q) = %v, want %v", tc.globs, tc.typ, got, tc.want)
		}
	}
}

func TestValidateTypeGlobs(t *testing.T) {
	for _, tc := range []struct {
		globs []string
		want  string
	}{
		{nil, ""},
		{[]string{"io.herald.*", "x"}, ""},
		{[]string{"ok", "io.[x"}, `invalid type glob "io.[x"`},
		{[]string{""}, `invalid type glob ""`},
	} {
		err := event.ValidateTypeGlobs(tc.globs)
		if got := errString(err); got != tc.want {
			t.Errorf("ValidateTypeGlobs(%q) = %q, want %q", tc.globs, got, tc.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
