package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	sqsadapter "github.com/heraldhq/herald/adapters/sqs"
	"github.com/heraldhq/herald/examples/internal/heraldtest"
	"github.com/heraldhq/herald/examples/internal/provision"
	"github.com/heraldhq/herald/internal/testsqs"
)

// Events go through Herald end to end (outbox.Write, the relay, the SQS
// adapter, the SQS emulator at HERALD_SQS_ENDPOINT) into the example. The
// side effect of a quarter of them fails on its first try, so their messages
// must come back after the visibility timeout; then all of them are written
// and relayed a second time, which a standard queue stores again, so that
// each reaches the consumer twice. Each must be provisioned exactly once.
func TestProvisionsEachEventOnceThroughSQS(t *testing.T) {
	const n = 20
	endpoint := testsqs.Endpoint()
	// The default AWS credential chain, as in production: here the
	// environment. Both the adapter and the example read it.
	testsqs.SetCredentialEnv(t)
	queueURL := testsqs.Queue(t, "herald-example", false)

	pub, err := sqsadapter.New(t.Context(), queueURL,
		sqsadapter.WithEndpoint(endpoint), sqsadapter.WithLogger(heraldtest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	ob := heraldtest.NewOutbox(t)
	events := heraldtest.Events(t, n)
	ob.Write(events...)
	relay := ob.Relay(pub)

	failOnce := heraldtest.IDs(events[:n/4])
	flaky := heraldtest.NewFlaky(provision.Provision, failOnce...)
	cfg := config{
		QueueURL:          queueURL,
		Endpoint:          endpoint,
		Name:              "provisioner",
		DBPath:            filepath.Join(t.TempDir(), "consumer.db"),
		WaitTime:          time.Second,
		VisibilityTimeout: time.Second,
	}
	db := heraldtest.Run(t, cfg.DBPath, func(ctx context.Context) error { return run(ctx, cfg, flaky.Apply) })

	ob.WaitDelivered(relay, n)
	waitQueueEmpty(t, queueURL)
	heraldtest.CheckExactlyOnce(t, db, events, flaky, failOnce)

	ob.Write(events...) // a standard queue has no duplicate detection
	ob.WaitDelivered(relay, 2*n)
	waitQueueEmpty(t, queueURL)
	heraldtest.CheckExactlyOnce(t, db, events, flaky, failOnce)
}

// waitQueueEmpty waits until every message was deleted, that is, the
// consumer was done with each.
func waitQueueEmpty(t *testing.T, queueURL string) {
	t.Helper()
	client := testsqs.Client()
	heraldtest.Eventually(t, 20*time.Second, "the consumer to delete every message", func() error {
		out, err := client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(queueURL),
			AttributeNames: []types.QueueAttributeName{
				types.QueueAttributeNameApproximateNumberOfMessages,
				types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			},
		})
		if err != nil {
			return err
		}
		visible := out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)]
		hidden := out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)]
		if visible != "0" || hidden != "0" {
			return fmt.Errorf("%s messages visible, %s in flight", visible, hidden)
		}
		return nil
	})
}
