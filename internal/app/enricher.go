package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/adapters"
	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/adapters/servicebus"
	sqsadapter "github.com/heraldhq/herald/adapters/sqs"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/pkg/outbox"
)

// OpenPortal opens the portal's database of enricher.portal_dsn (see
// [OpenPortalDB]), or returns nil when the portal's tables are in the
// outbox's database.
func OpenPortal(cfg config.Config) (*gorm.DB, error) {
	portal, ok := cfg.Enricher.Portal(cfg.Database)
	if !ok {
		return nil, nil
	}
	db, err := OpenPortalDB(portal.Driver, portal.DSN)
	if err != nil {
		return nil, fmt.Errorf("enricher.portal_dsn: %w", err)
	}
	return db, nil
}

// OpenPortalDB opens the portal's database without connecting to it, unlike
// outbox.Open, which pings: the portal being down must fail the records
// that need it (the tail retries, ingest answers 503), not the boot of a
// process whose relays have nothing to do with the portal. Times are read
// as UTC, as the outbox's are. Only a DSN that does not parse fails here.
func OpenPortalDB(driver, dsn string) (*gorm.DB, error) {
	return outbox.OpenLazy(driver, dsn)
}

// limitTimeout bounds asking the broker for its size limit.
const limitTimeout = 10 * time.Second

// MaxEventBytes is the largest event the main destination takes
// (adapters.Limited), for enricher.WithMaxEventBytes in a process that
// writes events without publishing them (`herald enrich`). Where the
// broker sets the limit (a NATS server's max_payload, an SQS queue's
// MaximumMessageSize) it is asked, with a connection closed again at once;
// where the configuration does (servicebus.max_message_size, the webhook
// body limit) nothing is contacted. A broker that cannot be asked is logged
// and its default limit used: an event the relay then cannot publish is
// dead-lettered, not lost, and writing events goes on while the broker is
// down.
func MaxEventBytes(ctx context.Context, cfg config.Config, log *slog.Logger) int {
	d := cfg.Main()
	switch {
	case d.Adapter == "nats" && d.NATS.URL != "embedded":
		ctx, cancel := context.WithTimeout(ctx, limitTimeout)
		defer cancel()
		n, err := natsadapter.MaxMessageBytesAt(ctx, d.NATS.URL, natsConnectOptions(d.NATS)...)
		if err == nil {
			return n
		}
		log.Warn("could not ask the NATS server for its max_payload; assuming the default", "error", err,
			"max_payload", natsadapter.DefaultMaxPayload)
	case d.Adapter == "sqs":
		ctx, cancel := context.WithTimeout(ctx, limitTimeout)
		defer cancel()
		pub, err := connectSQS(ctx, d.SQS, log)
		if err == nil {
			defer func() { _ = pub.Close() }()
			if l, ok := pub.(adapters.Limited); ok {
				return l.MaxMessageBytes()
			}
		}
		log.Warn("could not read the SQS queue's MaximumMessageSize; assuming sqs.max_message_size", "error", err)
	}
	return configuredMaxEventBytes(d)
}

// configuredMaxEventBytes is the main destination's limit as far as the
// configuration tells it, with each broker's default for what it leaves out.
func configuredMaxEventBytes(d config.Destination) int {
	switch d.Adapter {
	case "sqs":
		n := d.SQS.MaxMessageSize
		if n == 0 {
			n = sqsadapter.DefaultMaxMessageSize
		}
		return sqsadapter.PayloadLimit(n)
	case "servicebus":
		n := d.ServiceBus.MaxMessageSize
		if n == 0 {
			n = servicebus.DefaultMaxMessageSize
		}
		return servicebus.PayloadLimit(n)
	case "webhook":
		return webhook.DefaultMaxBodySize
	default:
		binding, err := adapters.ParseBinding(d.NATS.Binding)
		if err != nil {
			binding = adapters.Binary // the larger allowance, when in doubt
		}
		return natsadapter.PayloadLimit(natsadapter.DefaultMaxPayload, binding)
	}
}

// limitOf is what a connected publisher says of its limit, or what the
// configuration does when it cannot tell.
func limitOf(pub adapters.Publisher, d config.Destination) int {
	if l, ok := pub.(adapters.Limited); ok {
		return l.MaxMessageBytes()
	}
	return configuredMaxEventBytes(d)
}

// natsConnectOptions are the options of a NATS block that shape the
// connection and the messages' size: binding, credentials and TLS.
func natsConnectOptions(n config.NATS) []natsadapter.Option {
	var opts []natsadapter.Option
	if binding, err := adapters.ParseBinding(n.Binding); err == nil {
		opts = append(opts, natsadapter.WithBinding(binding))
	}
	switch {
	case n.CredsFile != "":
		opts = append(opts, natsadapter.WithCredsFile(n.CredsFile))
	case n.NKeySeedFile != "":
		opts = append(opts, natsadapter.WithNKeySeedFile(n.NKeySeedFile))
	case n.Token != "":
		opts = append(opts, natsadapter.WithToken(n.Token))
	case n.User != "":
		opts = append(opts, natsadapter.WithUserPassword(n.User, n.Password))
	}
	if n.TLS != (config.NATSTLS{}) {
		opts = append(opts, natsadapter.WithTLS(n.TLS.CAFile, n.TLS.CertFile, n.TLS.KeyFile))
	}
	return append(opts, natsadapter.WithLogger(slog.New(slog.DiscardHandler)))
}
