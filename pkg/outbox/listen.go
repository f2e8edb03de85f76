package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// NotifyChannel is the PostgreSQL channel the outbox's insert trigger
// notifies on.
const NotifyChannel = "herald_outbox"

// Listen holds a dedicated PostgreSQL connection LISTENing on NotifyChannel
// and calls wake for every notification, so a relay picks up a commit within
// milliseconds instead of at its next poll. It runs until ctx ends and
// returns nil then. A lost connection is re-dialled with backoff; wake is
// also called after every (re)connect, because notifications sent while no
// one listened are gone. Polling stays on regardless: notifications can be
// lost (a transaction-mode pooler between Herald and PostgreSQL drops them).
func Listen(ctx context.Context, dsn string, wake func(), log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	backoff := 100 * time.Millisecond
	for {
		err := listenOnce(ctx, dsn, wake, func() { backoff = 100 * time.Millisecond })
		select {
		case <-ctx.Done():
			return nil // shutting down; the connection error is only its echo
		default:
		}
		log.Warn("outbox listen: connection lost; polling only until it is back", "error", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func listenOnce(ctx context.Context, dsn string, wake, connected func()) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	wake()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return ctx.Err()
			}
			return fmt.Errorf("wait for notification: %w", err)
		}
		wake()
	}
}
