package redact_test

import (
	"errors"
	"fmt"

	"github.com/heraldhq/herald/internal/redact"
)

func Example() {
	fmt.Println(redact.URLs("nats://alice:s3cret@nats-1:4222,nats://nats-2:4222"))
	fmt.Println(redact.URL("https://partner.example/hook?token=abc"))
	fmt.Println(redact.DSN("postgres", "host=db user=herald password=s3cret"))
	fmt.Println(redact.DSN("mysql", "herald:s3cret@tcp(db:3306)/portal"))

	// Text from elsewhere: hide the secrets the configuration holds.
	var secrets redact.Secrets
	secrets.AddDSN("postgres", "postgres://herald:s3cret@db/portal")
	fmt.Println(secrets.Error(errors.New(`auth failed for "s3cret"`)))
	// Output:
	// nats://alice:xxxxx@nats-1:4222,nats://nats-2:4222
	// https://partner.example/hook?token=xxxxx
	// host=db user=herald password=xxxxx
	// herald:xxxxx@tcp(db:3306)/portal
	// auth failed for "xxxxx"
}
