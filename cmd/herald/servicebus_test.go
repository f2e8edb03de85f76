package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/testservicebus"
)

// herald status says whether Service Bus answers: reachable through the
// local peer (.ci/servicebus.sh), NOT REACHABLE once the way to it is cut.
func TestStatusReportsServiceBus(t *testing.T) {
	ctx := context.Background()
	proxy := testservicebus.NewProxy(t)
	dir := t.TempDir()
	cfg := writeFile(t, "herald.yaml", `
database:
  dsn: `+filepath.Join(dir, "outbox.db")+`
adapter: servicebus
servicebus:
  connection_string: "`+proxy.ConnectionString()+`"
  queue: `+testservicebus.Name(t, testservicebus.Queue)+`
`)
	if res := herald(ctx, t, nil, "migrate", "--config", cfg); res.code != exitOK {
		t.Fatalf("migrate: %+v", res)
	}
	res := herald(ctx, t, nil, "status", "--config", cfg)
	if res.code != exitOK || !strings.Contains(res.stdout, "reachable (connected") {
		t.Fatalf("status with Service Bus up: %+v", res)
	}
	if strings.Contains(res.stdout+res.stderr, "SAS_KEY_VALUE") {
		t.Errorf("status shows the key: %+v", res)
	}
	proxy.Stop()
	res = herald(ctx, t, nil, "status", "--config", cfg)
	if res.code != exitError || !strings.Contains(res.stdout, "NOT REACHABLE") {
		t.Fatalf("status with Service Bus unreachable: %+v", res)
	}
}
