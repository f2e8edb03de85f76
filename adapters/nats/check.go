package nats

import (
	"context"
	"fmt"

	natsgo "github.com/nats-io/nats.go"
)

var _ interface {
	Check(context.Context) error
} = (*Publisher)(nil)

// Check reports whether the server answers: a round trip on the connection,
// which fails at once while it is reconnecting.
func (p *Publisher) Check(ctx context.Context) error {
	if st := p.nc.Status(); st != natsgo.CONNECTED {
		return fmt.Errorf("nats: connection %s", st)
	}
	if err := p.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("nats: flush: %w", err)
	}
	return nil
}
