package servicebus

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/adapters"
)

var _ adapters.Checker = (*Publisher)(nil)

// Check implements adapters.Checker for readiness probes. It opens a second
// sender link to the entity on the client's connection and closes it again:
// the Publisher's own link is cached by the SDK and says nothing about the
// connection until a send fails, while a new link needs the connection
// (reopened if it was lost), the claim put on $cbs and the entity, which is
// what a publish needs too. It sends nothing and does not wait for a
// Publish in progress.
func (p *Publisher) Check(ctx context.Context) error {
	if p.core.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, p.core.cfg.sendTimeout)
	defer cancel()
	s, err := p.client.NewSender(p.core.entity, nil)
	if err != nil {
		return fmt.Errorf("servicebus: check %s: %w", p.core.entity, err)
	}
	_, err = s.NewMessageBatch(ctx, p.core.batchOptions())
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancelClose()
	if err = errors.Join(err, s.Close(closeCtx)); err != nil {
		return fmt.Errorf("servicebus: check %s: %w", p.core.entity, err)
	}
	return nil
}
