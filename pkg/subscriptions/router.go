package subscriptions

import (
	"slices"
	"sync"

	"github.com/heraldhq/herald/pkg/outbox"
)

// Router is an outbox.Router over the stored endpoints: an event goes to
// every endpoint whose types match it, enabled or not, since a disabled
// endpoint's events wait for it to be enabled again. It answers from the
// snapshot last given to Set, because the outbox asks inside the producer's
// transaction; the owner refreshes it from [Store.List]. The zero value
// routes nothing and is ready to use.
type Router struct {
	mu     sync.RWMutex
	routes outbox.Routes
}

var _ outbox.Router = (*Router)(nil)

// Set replaces the snapshot.
func (r *Router) Set(endpoints []Endpoint) {
	routes := make(outbox.Routes, len(endpoints))
	for i, e := range endpoints {
		routes[i] = outbox.Route{Destination: e.Destination(), Types: slices.Clone(e.Types)}
	}
	r.mu.Lock()
	r.routes = routes
	r.mu.Unlock()
}

// Empty implements outbox.Router.
func (r *Router) Empty() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.routes) == 0
}

// Destinations implements outbox.Router.
func (r *Router) Destinations(eventType string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.routes.Destinations(eventType)
}
