// Command herald relays business events from a transactional outbox to a
// message broker. Run `herald demo` to watch the whole data path on one
// machine, `herald serve` to run the relay, `herald migrate` to create or
// print the outbox schema, `herald outbox` to inspect, retry and purge rows.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}
