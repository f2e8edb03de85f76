package sqs_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/heraldhq/herald/adapters"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

func TestZZStress(t *testing.T) {
	emu := emulator(t)
	c := emu.client(t)
	for round := 0; round < 60; round++ {
		q := emu.createQueueWith(t, c, false, nil)
		sent := 0
		var mids []string
		for b := 0; b < 4; b++ {
			in := &awssqs.SendMessageBatchInput{QueueUrl: aws.String(q)}
			for i := 0; i < 10; i++ {
				in.Entries = append(in.Entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(fmt.Sprintf(`{"r":%d,"b":%d,"i":%d}`, round, b, i))})
			}
			out, err := c.SendMessageBatch(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Failed) > 0 || len(out.Successful) != 10 {
				t.Fatalf("failed %d ok %d", len(out.Failed), len(out.Successful))
			}
			for _, s := range out.Successful {
				mids = append(mids, aws.ToString(s.MessageId))
			}
			sent += 10
		}
		attrs, err := c.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(q), AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages"}})
		if err != nil {
			t.Fatal(err)
		}
		if n := attrs.Attributes["ApproximateNumberOfMessages"]; n != strconv.Itoa(sent) {
			fmt.Fprintf(os.Stderr, "round %d: queue %s holds %s, sent %d; mids %v\n", round, q, n, sent, mids)
			t.Errorf("round %d lost", round)
		}
	}
}

func TestZZStressPublisher(t *testing.T) {
	emu := emulator(t)
	c := emu.client(t)
	for round := 0; round < 40; round++ {
		q := emu.createQueueWith(t, c, false, nil)
		p := emu.publisher(t, q)
		var msgs []adapters.Message
		for i := range 7 {
			msgs = append(msgs, adapters.Message{ID: fmt.Sprintf("big-%d-%d", round, i), Type: "t", Payload: padded(300_000)})
		}
		for i := range 11 {
			msgs = append(msgs, adapters.Message{ID: fmt.Sprintf("small-%d-%d", round, i), Type: "t", Payload: []byte(`{"small":true}`)})
		}
		requireOK(t, p.Publish(t.Context(), msgs))
		attrs, err := c.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(q), AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages"}})
		if err != nil {
			t.Fatal(err)
		}
		if n := attrs.Attributes["ApproximateNumberOfMessages"]; n != strconv.Itoa(len(msgs)) {
			t.Errorf("round %d: queue %s holds %s, sent %d", round, q, n, len(msgs))
		}
	}
}
