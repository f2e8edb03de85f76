package app

import (
	"context"
	"fmt"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/console"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/producer"
	"github.com/heraldhq/herald/pkg/subscriptions"
)

// newConsole builds the operator console over what serve already holds:
// the outbox store, the stored endpoints and their tester as the admin API
// has them, the enricher's quarantine as `herald enrich retry` opens it,
// and every relay's counters.
func (a *App) newConsole() (*console.Console, error) {
	dests := []console.Destination{consoleDestination(a.main, a.Publisher)}
	for i, d := range a.Config.Destinations {
		dests = append(dests, consoleDestination(d, a.publishers[i]))
	}
	e, sopts, err := a.servedEnricher()
	if err != nil {
		return nil, err
	}
	q, err := enricher.NewQuarantine(a.DB, e, sopts...)
	if err != nil {
		return nil, fmt.Errorf("console: enricher quarantine: %w", err)
	}
	wopts := WebhookOptions(a.Config.Subscriptions)
	c, err := console.New(console.Config{
		Store:        a.Store,
		Destinations: dests,
		Endpoints:    a.Subscriptions,
		Tester: func(ctx context.Context, e subscriptions.Endpoint) (subscriptions.TestResult, error) {
			return subscriptions.Test(ctx, e, wopts...)
		},
		OnChange:    a.fleet.Kick,
		Notify:      a.Notify,
		SecretGrace: a.Config.Subscriptions.SecretGrace,
		Quarantine:  q,
		Stats:       a.relayStats,
		AdminToken:  a.Config.HTTP.AdminToken,
		ReadOnly:    a.Config.HTTP.ConsoleReadOnly,
		SampleEvery: a.Config.HTTP.ConsoleSampleEvery,
		Secrets:     a.secrets,
		Logger:      a.log,
	})
	if err != nil {
		return nil, fmt.Errorf("http.admin_token: %w", err)
	}
	return c, nil
}

// servedEnricher is the enricher of serve's ingest and of the console's
// quarantine retries, with its source options: events are written once, for
// main, which then fans them out, so an event main would refuse is
// quarantined instead.
func (a *App) servedEnricher(extra ...enricher.SourceOption) (*enricher.Enricher, []enricher.SourceOption, error) {
	eopts, err := EnricherOptions(a.Config, "")
	if err != nil {
		return nil, nil, err
	}
	sopts := append([]enricher.SourceOption{enricher.WithSourceLogger(a.log),
		enricher.WithMaxEventBytes(limitOf(a.Publisher, a.main))}, extra...)
	if a.Portal != nil {
		sopts = append(sopts, enricher.WithPortal(a.Portal))
	}
	return enricher.New(append(append(eopts, a.enricherOpts...), enricher.WithLogger(a.log))...), sopts, nil
}

// consoleDestination describes d for the console, with its adapter's
// readiness check when the adapter has one.
func consoleDestination(d config.Destination, pub adapters.Publisher) console.Destination {
	cd := console.Destination{Name: d.Name, Adapter: d.Adapter, Target: Target(d)}
	if c, ok := pub.(adapters.Checker); ok {
		cd.Check = c.Check
	}
	return cd
}

// relayStats returns every running relay's counters by destination: main,
// the config's destinations (a.Relays is in that order) and each stored
// endpoint's.
func (a *App) relayStats() map[string]producer.Stats {
	out := map[string]producer.Stats{a.main.Name: a.Relay.Stats()}
	for i, d := range a.Config.Destinations {
		out[d.Name] = a.Relays[i+1].Stats()
	}
	a.fleet.mu.Lock()
	defer a.fleet.mu.Unlock()
	for name, r := range a.fleet.running {
		out[subscriptions.Destination(name)] = r.relay.Stats()
	}
	return out
}
