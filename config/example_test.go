package config_test

import (
	"fmt"

	"github.com/heraldhq/herald/config"
)

func ExampleLoad() {
	// In main: config.Load(*configPath, os.Environ()).
	cfg, err := config.Load("", []string{
		"HERALD_RELAY_BATCH_SIZE=250",
		"HERALD_NATS_URL=nats://nats-1:4222,nats://nats-2:4222",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Relay.BatchSize, cfg.NATS.URL, cfg.Relay.PollInterval)
	// Output: 250 nats://nats-1:4222,nats://nats-2:4222 500ms
}

func ExampleLoad_errors() {
	_, err := config.Load("", []string{
		"HERALD_RELAY_BATCHSIZE=250",
		"HERALD_RELAY_LEASE=30",
	})
	fmt.Println(err)
	// Output:
	// env HERALD_RELAY_BATCHSIZE: unknown setting
	// env HERALD_RELAY_LEASE: relay.lease: cannot parse "30" as a duration, e.g. "500ms" or "2m"
}

func ExampleConfig_Validate() {
	cfg := config.Default()
	cfg.Relay.BatchSize = 0
	cfg.NATS.URL = ""
	fmt.Println(cfg.Validate())
	// Output:
	// nats.url: required when adapter=nats
	// relay.batch_size: must be between 1 and 10000 (got 0)
}
