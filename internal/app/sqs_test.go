package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/heraldhq/herald/internal/testsqs"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// Switching the embedded default to AWS SQS is the adapter key and the sqs
// block; the outbox, the relay and the producers stay as they are. Runs
// against the SQS emulator .ci/sqs.sh starts (HERALD_SQS_ENDPOINT).
func TestServeRelaysToSQSWhenTheAdapterSaysSo(t *testing.T) {
	ctx := context.Background()
	testsqs.SetCredentialEnv(t) // the default AWS credential chain, as in production
	queueURL := testsqs.Queue(t, "herald-app", true)
	client := testsqs.Client()

	cfg := testConfig(t)
	cfg.Adapter = "sqs"
	cfg.SQS.QueueURL = queueURL
	cfg.SQS.Endpoint = testsqs.Endpoint()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Embedded != nil {
		t.Error("adapter sqs still started the embedded JetStream server")
	}

	const n = 12
	want := map[string]string{} // event id → partition key
	for i := range n {
		key := fmt.Sprintf("dp-%d", i%3)
		ev, err := event.New("io.herald.test.thing.created", "/test", map[string]int{"n": i}, event.WithPartitionKey(key))
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Write(ctx, a.DB, ev); err != nil {
			t.Fatal(err)
		}
		want[ev.ID] = key
	}
	run(t, a)

	got := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		out, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl:                    &queueURL,
			MaxNumberOfMessages:         10,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameMessageGroupId},
			VisibilityTimeout:           2,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			id := aws.ToString(m.MessageAttributes["ce-id"].StringValue)
			got[id] = m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]
			if _, err := client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: &queueURL, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
		if len(out.Messages) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(got) != n {
		t.Fatalf("received %d of %d events from SQS", len(got), n)
	}
	for id, key := range want {
		if got[id] != key {
			t.Errorf("event %s: MessageGroupId %q, want its partition key %q", id, got[id], key)
		}
	}
	if p := a.Relay.Stats().Published; p != n {
		t.Errorf("relay published %d, want %d", p, n)
	}
}
