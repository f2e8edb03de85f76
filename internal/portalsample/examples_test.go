package portalsample

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/pkg/enricher"
)

// The showcase exists so every event type has a real example.
func TestExamplesCoverTheCatalogue(t *testing.T) {
	e := enricher.New()
	ex, err := Examples(context.Background(), e)
	if err != nil {
		t.Fatalf("Examples: %v", err)
	}
	for _, et := range e.Rules().EventTypes() {
		ev, ok := ex[et.Type]
		if !ok {
			t.Errorf("no example of %s", et.Type)
			continue
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("example of %s: %v", et.Type, err)
		}
	}
	again, err := Examples(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	for typ, ev := range ex {
		if again[typ].ID != ev.ID {
			t.Errorf("example of %s: id %s then %s; want a stable id", typ, ev.ID, again[typ].ID)
		}
	}
}
