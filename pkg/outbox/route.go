package outbox

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/heraldhq/herald/pkg/event"
)

// MainDestination names the destination every event goes to: the adapter a
// relay publishes through unless it is given another destination. Rows
// written without a destination, e.g. by plain SQL, belong to it.
const MainDestination = "main"

// Router decides where, besides the main destination, an event goes.
// [WriteRouted] asks it once per event, inside the producer's transaction,
// so it must answer from memory.
type Router interface {
	// Destinations returns the extra destinations of an event type; an
	// answer of MainDestination, or a repeated one, is ignored.
	Destinations(eventType string) []string
}

// Route sends the events whose type matches one of Types to Destination.
type Route struct {
	Destination string
	// Types are globs over the CloudEvents type in path.Match syntax,
	// where * also matches dots: "io.herald.portal.input_port.*". Empty
	// matches every type.
	Types []string
}

// Routes is a static route table. An event goes to every destination whose
// route matches its type, once even if several routes of one destination
// match.
type Routes []Route

// Validate reports the first invalid route: a bad destination name, the
// main destination, or a malformed glob.
func (rs Routes) Validate() error {
	for i, r := range rs {
		if err := ValidateDestination(r.Destination); err != nil {
			return fmt.Errorf("route %d: %w", i, err)
		}
		if r.Destination == MainDestination {
			return fmt.Errorf("route %d: destination %q receives every event already", i, MainDestination)
		}
		if err := event.ValidateTypeGlobs(r.Types); err != nil {
			return fmt.Errorf("route %d (%s): %w", i, r.Destination, err)
		}
	}
	return nil
}

// Destinations implements Router.
func (rs Routes) Destinations(eventType string) []string {
	var out []string
	for _, r := range rs {
		if event.MatchType(r.Types, eventType) && !slices.Contains(out, r.Destination) {
			out = append(out, r.Destination)
		}
	}
	return out
}

// A destination name goes into metric labels, log lines and the CLI, and
// fits the column on every dialect.
var destinationName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,127}$`)

// ValidateDestination reports whether name can name a destination: 1 to 128
// lower-case letters, digits, '_', '.', ':' or '-', starting with a letter
// or digit.
func ValidateDestination(name string) error {
	if !destinationName.MatchString(name) {
		return fmt.Errorf("destination %q: want 1 to 128 of a-z 0-9 _ . : - starting with a letter or digit", name)
	}
	return nil
}
