package servicebus_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/servicebus"
)

// ExampleNewWithCredential connects with Microsoft Entra ID. On AKS with
// workload identity (or on any Azure host with a managed identity),
// DefaultAzureCredential finds the identity in the environment; it needs the
// Azure Service Bus Data Sender role on the queue or the namespace. The queue
// here is session-enabled, so each account's events reach one consumer in
// order. (Not run: it needs a namespace.)
func ExampleNewWithCredential() {
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := servicebus.NewWithCredential(ctx, "herald-prod.servicebus.windows.net", "orders", cred,
		servicebus.WithSessions(true))
	if err != nil {
		log.Fatal(err) // names the namespace and queue, and the fix for a missing role or queue
	}
	defer func() { _ = pub.Close() }()

	res := pub.Publish(ctx, []adapters.Message{{
		ID:           "0190b6a8-7c1e-7d3a-9f00-4b5c6d7e8f90",
		Type:         "com.example.order.created",
		PartitionKey: "account-42",
		Payload:      []byte(`{"specversion":"1.0","id":"0190b6a8-7c1e-7d3a-9f00-4b5c6d7e8f90","source":"/shop","type":"com.example.order.created","partitionkey":"account-42","data":{"total":12.5}}`),
	}})
	log.Println(res[0].Err)
}

// ExampleNewFromConnectionString connects with a shared access policy that
// has the Send claim, and sends events in the CloudEvents binary content
// mode, so subscription rules can filter on application properties such as
// cloudEvents:source. (Not run: it needs a namespace.)
func ExampleNewFromConnectionString() {
	ctx := context.Background()
	pub, err := servicebus.NewFromConnectionString(ctx, os.Getenv("HERALD_SERVICEBUS_CONNECTION_STRING"), "events",
		servicebus.WithBinding(servicebus.Binary))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = pub.Close() }()
	// pub is an adapters.Publisher: hand it to the relay.
	var _ adapters.Publisher = pub
}
