package nats

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSubjectTemplate(t *testing.T) {
	tests := []struct {
		template string
		wantErr  string // substring; "" means valid
	}{
		{"herald.{type}", ""},
		{"herald.{partitionkey}.{type}", ""},
		{"orders", ""},
		{"{type}", ""},
		{"a-b_c.{type}-v1", ""},
		{"événements.{type}", ""},
		{"", "empty"},
		{"herald.{tpye}", "unknown placeholder {tpye}"},
		{"herald.{Type}", "unknown placeholder"},
		{"herald.{type", "unclosed"},
		{"herald.type}", "without '{'"},
		{"herald..{type}", "empty token"},
		{".herald.{type}", "empty token"},
		{"herald.{type}.", "empty token"},
		{"herald.*.{type}", "wildcard"},
		{"herald.>", "wildcard"},
		{"her ald.{type}", "whitespace"},
		{"herald.{type}\t", "whitespace"},
		{"herald.\x00.{type}", "control"},
		{strings.Repeat("a", maxSubjectLen+1), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.template, func(t *testing.T) {
			_, err := parseSubjectTemplate(tt.template)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("accepted, want error containing %q", tt.wantErr)
			case tt.wantErr != "" && (!strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidSubject)):
				t.Fatalf("error %q, want ErrInvalidSubject containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestExpandSubject(t *testing.T) {
	tests := []struct {
		name, template, eventType, key string
		want                           string // "" means an error is expected
	}{
		{"type with dots", "herald.{type}", "com.example.order.created", "", "herald.com.example.order.created"},
		{"key and type", "h.{partitionkey}.{type}", "order.created", "acct-7", "h.acct-7.order.created"},
		{"missing key", "h.{partitionkey}.{type}", "order.created", "", "h._.order.created"},
		{"key unused", "herald.{type}", "x", "acct-7", "herald.x"},
		{"unicode type", "herald.{type}", "commande.créée", "", "herald.commande.créée"},
		{"type with space", "herald.{type}", "order created", "", ""},
		{"type with star", "herald.{type}", "order.*", "", ""},
		{"type with gt", "herald.{type}", "order.>", "", ""},
		{"type empty", "herald.{type}", "", "", ""},
		{"type leading dot", "herald.{type}", ".order", "", ""},
		{"type with newline", "herald.{type}", "order\ncreated", "", ""},
		{"key with dot splits", "h.{partitionkey}", "x", "a.b", "h.a.b"},
		{"key with space", "h.{partitionkey}", "x", "a b", ""},
		{"too long", "h.{type}", strings.Repeat("t", maxSubjectLen), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := parseSubjectTemplate(tt.template)
			if err != nil {
				t.Fatalf("template: %v", err)
			}
			got, err := tmpl.expand(tt.eventType, tt.key)
			switch {
			case tt.want == "" && err == nil:
				t.Fatalf("expanded to %q, want an error", got)
			case tt.want == "" && !errors.Is(err, ErrInvalidSubject):
				t.Fatalf("error %v does not wrap ErrInvalidSubject", err)
			case tt.want != "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case got != tt.want:
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSubjectMatches(t *testing.T) {
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"herald.>", "herald.x", true},
		{"herald.>", "herald.a.b.c", true},
		{"herald.>", "herald", false},
		{"herald.>", "other.x", false},
		{"herald.*", "herald.x", true},
		{"herald.*", "herald.x.y", false},
		{"herald.*.created", "herald.order.created", true},
		{"herald.*.created", "herald.order.updated", false},
		{"herald.x", "herald.x", true},
		{"herald.x", "herald.xy", false},
		{">", "anything.at.all", true},
	}
	for _, tt := range tests {
		if got := subjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
}
