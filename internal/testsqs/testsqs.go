// Package testsqs gives tests a fresh queue on the SQS emulator that
// .ci/sqs.sh runs (fauxqs, at HERALD_SQS_ENDPOINT, by default
// http://127.0.0.1:4566), as package testdb gives them a database.
package testsqs

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Region is the region the emulator's queues are in.
const Region = "us-east-1"

// Endpoint is the emulator's URL.
func Endpoint() string {
	if e := os.Getenv("HERALD_SQS_ENDPOINT"); e != "" {
		return e
	}
	return "http://127.0.0.1:4566"
}

// Client is an SQS client for the emulator, for setting up and reading
// queues beside the code under test.
func Client() *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(Endpoint()),
	})
}

// SetCredentialEnv puts emulator credentials and the region where the
// default AWS credential chain looks first, so code under test loads them
// as it would in production.
func SetCredentialEnv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", Region)
}

// Queue creates a queue named after prefix, FIFO when fifo is set, deleted
// at cleanup, and returns its URL. Without the emulator the test is
// skipped, unless HERALD_REQUIRE_SERVICES=1 (as in CI), which fails it.
func Queue(t testing.TB, prefix string, fifo bool) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	in := &sqs.CreateQueueInput{QueueName: aws.String(name)}
	if fifo {
		in.QueueName = aws.String(name + ".fifo")
		in.Attributes = map[string]string{"FifoQueue": "true"}
	}
	client := Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := client.CreateQueue(ctx, in, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
			t.Fatalf("SQS emulator at %s: %v", Endpoint(), err)
		}
		t.Skipf("SQS emulator at %s unavailable (%v); run .ci/sqs.sh, or set HERALD_REQUIRE_SERVICES=1 to fail instead", Endpoint(), err)
	}
	queueURL := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(queueURL)})
	})
	return queueURL
}
