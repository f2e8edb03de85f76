package config_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/config"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

func TestDefaultIsValid(t *testing.T) {
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatalf("Load(\"\", nil) = %v", err)
	}
	if !reflect.DeepEqual(cfg, config.Default()) {
		t.Fatalf("Load(\"\", nil) = %+v, want Default() %+v", cfg, config.Default())
	}
}

// TestExampleFile keeps herald.example.yaml, the reference users read, from
// drifting: it must name every key and set each to its default.
func TestExampleFile(t *testing.T) {
	const path = "herald.example.yaml"
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("Load(%s) = %v", path, err)
	}
	if !reflect.DeepEqual(cfg, config.Default()) {
		t.Errorf("%s loads as\n%+v\nwant Default()\n%+v", path, cfg, config.Default())
	}

	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	got, want := k.Keys(), slices.Sorted(slices.Values(config.Keys()))
	if !slices.Equal(got, want) {
		t.Errorf("%s has keys\n%v\nwant every key\n%v", path, got, want)
	}

	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if config.ExampleYAML() != string(onDisk) {
		t.Error("ExampleYAML() differs from herald.example.yaml")
	}
}

func TestKeysAndEnvNames(t *testing.T) {
	keys := config.Keys()
	for _, want := range []string{"database.dsn", "adapter", "nats.embedded_store_dir", "relay.batch_size", "log.format"} {
		if !slices.Contains(keys, want) {
			t.Errorf("Keys() lacks %q: %v", want, keys)
		}
	}
	if got := config.EnvName("relay.batch_size"); got != "HERALD_RELAY_BATCH_SIZE" {
		t.Errorf("EnvName(relay.batch_size) = %q", got)
	}
	// Mapping variables back to keys relies on no two keys sharing a name.
	seen := make(map[string]string)
	for _, k := range keys {
		name := config.EnvName(k)
		if other, dup := seen[name]; dup {
			t.Errorf("keys %q and %q both map to %s", other, k, name)
		}
		seen[name] = k
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		yaml string // written to herald.yaml; "-" means no file at all
		env  []string
		want func(*config.Config) // edits Default() into the expected Config
	}{
		{
			name: "empty file keeps defaults",
			yaml: "",
			want: func(*config.Config) {},
		},
		{
			name: "comments and empty sections keep defaults",
			yaml: "# nothing yet\nrelay:\nnats: {}\n",
			want: func(*config.Config) {},
		},
		{
			name: "key without a value keeps its default",
			yaml: "relay:\n  batch_size:\n",
			want: func(*config.Config) {},
		},
		{
			name: "file overrides defaults",
			yaml: `
database:
  dsn: /var/lib/herald/outbox.db
nats:
  url: nats://a:4222, tls://b:4222
  stream_subjects: [orders.>, billing.>]
  provision_stream: false
relay:
  batch_size: 500
  poll_interval: 2s
  keep_delivered: true
log:
  format: json
`,
			want: func(c *config.Config) {
				c.Database.DSN = "/var/lib/herald/outbox.db"
				c.NATS.URL = "nats://a:4222, tls://b:4222"
				c.NATS.StreamSubjects = []string{"orders.>", "billing.>"}
				c.NATS.ProvisionStream = false
				c.Relay.BatchSize = 500
				c.Relay.PollInterval = 2 * time.Second
				c.Relay.KeepDelivered = true
				c.Log.Format = "json"
			},
		},
		{
			name: "env overrides defaults without a file",
			yaml: "-",
			env: []string{
				"HERALD_RELAY_BATCH_SIZE=7",
				"HERALD_NATS_URL=nats://broker:4222",
				"HERALD_NATS_EMBEDDED_STORE_DIR=/data/js",
				"HERALD_NATS_STREAM_SUBJECTS=orders.>, billing.>",
				"HERALD_NATS_DUPLICATE_WINDOW=90s",
				"HERALD_RELAY_KEEP_DELIVERED=true",
				"HERALD_DATABASE_DSN=/tmp/x.db",
			},
			want: func(c *config.Config) {
				c.Relay.BatchSize = 7
				c.NATS.URL = "nats://broker:4222"
				c.NATS.EmbeddedStoreDir = "/data/js"
				c.NATS.StreamSubjects = []string{"orders.>", "billing.>"}
				c.NATS.DuplicateWindow = 90 * time.Second
				c.Relay.KeepDelivered = true
				c.Database.DSN = "/tmp/x.db"
			},
		},
		{
			name: "env beats file",
			yaml: "relay:\n  batch_size: 500\n  lease: 1m\n",
			env:  []string{"HERALD_RELAY_BATCH_SIZE=50"},
			want: func(c *config.Config) {
				c.Relay.BatchSize = 50
				c.Relay.Lease = time.Minute
			},
		},
		{
			name: "numbers: an int or a fraction in the file, a string in env",
			yaml: "tracing:\n  exporter: otlp\n  sample_ratio: 0\n",
			env:  []string{"HERALD_TRACING_ENDPOINT=http://collector:4318"},
			want: func(c *config.Config) {
				c.Tracing = config.Tracing{Exporter: "otlp", Endpoint: "http://collector:4318", SampleRatio: 0}
			},
		},
		{
			name: "the delivery log off from the file, its retention from env",
			yaml: "delivery_log:\n  enabled: false\n",
			env:  []string{"HERALD_DELIVERY_LOG_RETENTION=72h"},
			want: func(c *config.Config) { c.DeliveryLog = config.DeliveryLog{Enabled: false, Retention: 72 * time.Hour} },
		},
		{
			name: "a fraction from env",
			yaml: "-",
			env:  []string{"HERALD_TRACING_SAMPLE_RATIO=0.25"},
			want: func(c *config.Config) { c.Tracing.SampleRatio = 0.25 },
		},
		{
			name: "env list replaces the file's list",
			yaml: "nats:\n  stream_subjects: [a.>, b.>, c.>]\n",
			env:  []string{"HERALD_NATS_STREAM_SUBJECTS=z.>"},
			want: func(c *config.Config) { c.NATS.StreamSubjects = []string{"z.>"} },
		},
		{
			name: "quoted numbers and bools are read",
			yaml: "relay:\n  batch_size: \"250\"\n  keep_delivered: \"true\"\n",
			want: func(c *config.Config) {
				c.Relay.BatchSize = 250
				c.Relay.KeepDelivered = true
			},
		},
		{
			name: "subscriptions and the admin token from the file",
			yaml: `
http:
  listen: ":9090"
  admin_token: 0123456789abcdef
subscriptions:
  refresh_interval: 1s
  timeout: 3s
  concurrency: 8
  retry_schedule: [1s, 2m, 1h30m]
  disable_after: 0s
  secret_grace: 10m
  allow_cidrs: [10.0.0.0/8, 192.168.1.7]
  allow_http_hosts: [hooks.internal]
`,
			want: func(c *config.Config) {
				c.HTTP.Listen, c.HTTP.AdminToken = ":9090", "0123456789abcdef"
				c.Subscriptions = config.Subscriptions{RefreshInterval: time.Second, Timeout: 3 * time.Second, Concurrency: 8,
					RetrySchedule: []time.Duration{time.Second, 2 * time.Minute, 90 * time.Minute},
					SecretGrace:   10 * time.Minute, AllowCIDRs: []string{"10.0.0.0/8", "192.168.1.7"},
					AllowHTTPHosts: []string{"hooks.internal"}}
			},
		},
		{
			name: "subscriptions and the admin token from env",
			yaml: "-",
			env: []string{
				"HERALD_SUBSCRIPTIONS_RETRY_SCHEDULE=1s, 2m",
				"HERALD_SUBSCRIPTIONS_ALLOW_HTTP_HOSTS=a.internal, b.internal",
				"HERALD_HTTP_LISTEN=:9090",
				"HERALD_HTTP_ADMIN_TOKEN=an-admin-token-from-a-secret",
			},
			want: func(c *config.Config) {
				c.Subscriptions.RetrySchedule = []time.Duration{time.Second, 2 * time.Minute}
				c.Subscriptions.AllowHTTPHosts = []string{"a.internal", "b.internal"}
				c.HTTP.Listen, c.HTTP.AdminToken = ":9090", "an-admin-token-from-a-secret"
			},
		},
		{
			name: "env retry schedule replaces the file's",
			yaml: "subscriptions:\n  retry_schedule: [1s, 2s, 3s]\n",
			env:  []string{"HERALD_SUBSCRIPTIONS_RETRY_SCHEDULE=1m"},
			want: func(c *config.Config) { c.Subscriptions.RetrySchedule = []time.Duration{time.Minute} },
		},
		{
			name: "retry schedule without a value keeps the default",
			yaml: "subscriptions:\n  retry_schedule:\n",
			want: func(*config.Config) {},
		},
		{
			name: "allowlisted and foreign variables are ignored",
			yaml: "-",
			env: []string{
				"HERALD_REQUIRE_SERVICES=1",
				"HERALD_TEST_NATS_URL=nats://ci:4222",
				"PATH=/usr/bin",
				"herald_relay_batch_size=9",
				"NOT_AN_ASSIGNMENT",
			},
			want: func(*config.Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "-" {
				path = writeFile(t, tt.yaml)
			}
			got, err := config.Load(path, tt.env)
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			want := config.Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string // "-" means no file
		env     []string
		want    []string // every line the error must contain, with {path} for the file
		invalid bool     // whether the error wraps ErrInvalid
	}{
		{
			name:    "unknown file key",
			yaml:    "relay:\n  batchsize: 5\n",
			want:    []string{`config {path}: unknown key "relay.batchsize"`},
			invalid: true,
		},
		{
			name:    "unknown top-level key and setting under a leaf",
			yaml:    "colour: blue\nrelay:\n  batch_size:\n    value: 5\n",
			want:    []string{`config {path}: unknown key "colour"`, `config {path}: unknown key "relay.batch_size.value"`},
			invalid: true,
		},
		{
			name:    "section that is not a mapping",
			yaml:    "relay: fast\n",
			want:    []string{`config {path}: relay: must be a mapping of settings (got "fast")`},
			invalid: true,
		},
		{
			name:    "unknown HERALD variable",
			yaml:    "-",
			env:     []string{"HERALD_RELAY_BATCHSIZE=5", "HERALD_=x"},
			want:    []string{"env HERALD_RELAY_BATCHSIZE: unknown setting", "env HERALD_: unknown setting"},
			invalid: true,
		},
		{
			name:    "bad int in env",
			yaml:    "-",
			env:     []string{"HERALD_RELAY_BATCH_SIZE=abc"},
			want:    []string{`env HERALD_RELAY_BATCH_SIZE: relay.batch_size: cannot parse "abc" as int`},
			invalid: true,
		},
		{
			name:    "empty env int",
			yaml:    "-",
			env:     []string{"HERALD_RELAY_MAX_ATTEMPTS="},
			want:    []string{`env HERALD_RELAY_MAX_ATTEMPTS: relay.max_attempts: cannot parse "" as int`},
			invalid: true,
		},
		{
			name:    "bad int in file",
			yaml:    "relay:\n  batch_size: abc\n  max_attempts: 1.5\n",
			want:    []string{`config {path}: relay.batch_size: cannot parse "abc" as int`, `config {path}: relay.max_attempts: cannot parse 1.5 as int`},
			invalid: true,
		},
		{
			name:    "bad duration in file",
			yaml:    "relay:\n  poll_interval: 5 minutes\n",
			want:    []string{`config {path}: relay.poll_interval: cannot parse "5 minutes" as a duration`},
			invalid: true,
		},
		{
			name:    "duration without unit",
			yaml:    "relay:\n  lease: 30\n",
			want:    []string{`config {path}: relay.lease: cannot parse 30 as a duration: give a unit`},
			invalid: true,
		},
		{
			name:    "bad duration in env",
			yaml:    "-",
			env:     []string{"HERALD_NATS_ACK_TIMEOUT=soon"},
			want:    []string{`env HERALD_NATS_ACK_TIMEOUT: nats.ack_timeout: cannot parse "soon" as a duration`},
			invalid: true,
		},
		{
			name:    "bad number",
			yaml:    "tracing:\n  sample_ratio: lots\n",
			want:    []string{`config {path}: tracing.sample_ratio: cannot parse "lots" as a number`},
			invalid: true,
		},
		{
			name:    "bad bool",
			yaml:    "nats:\n  provision_stream: maybe\n",
			want:    []string{`config {path}: nats.provision_stream: cannot parse "maybe" as a bool`},
			invalid: true,
		},
		{
			name: "a secret of the wrong type is not shown",
			yaml: "nats:\n  password: 31415926\nhttp:\n  ingest_token: [27182818]\nwebhook:\n  secrets: [16180339]\n",
			want: []string{
				`config {path}: http.ingest_token: must be a string (the value is not shown: it is a secret)`,
				`config {path}: nats.password: must be a string (the value is not shown: it is a secret)`,
				`config {path}: webhook.secrets: must be a list of strings (the value is not shown: it is a secret)`,
			},
			invalid: true,
		},
		{
			name: "a secrets key of the wrong type is not shown",
			yaml: "subscriptions:\n  secrets_key: [31415926]\n  previous_secrets_keys: 27182818\n",
			want: []string{
				`config {path}: subscriptions.previous_secrets_keys: must be a list of strings (the value is not shown: it is a secret)`,
				`config {path}: subscriptions.secrets_key: must be a string (the value is not shown: it is a secret)`,
			},
			invalid: true,
		},
		{
			name:    "a URL where a section or string goes is shown redacted",
			yaml:    "nats: nats://alice:pw@h:4222\nwebhook:\n  url:\n    - https://h/hook?token=t0k\n",
			want:    []string{`config {path}: nats: must be a mapping of settings (got "nats://alice:xxxxx@h:4222")`, `config {path}: webhook.url: cannot parse [https://h/hook?token=xxxxx] as a string`},
			invalid: true,
		},
		{
			name:    "wrong type for string and list",
			yaml:    "database:\n  dsn: 42\nnats:\n  stream_subjects: [a.>, 7]\n",
			want:    []string{`config {path}: database.dsn: cannot parse 42 as a string`, `config {path}: nats.stream_subjects: entry 2: cannot parse 7 as a string`},
			invalid: true,
		},
		{
			name:    "bad retry schedule entry in file",
			yaml:    "subscriptions:\n  retry_schedule: [5s, 5 parsecs]\n",
			want:    []string{`config {path}: subscriptions.retry_schedule: entry 2: cannot parse "5 parsecs" as a duration`},
			invalid: true,
		},
		{
			// YAML reads 5 as a number, which no list entry may be: the
			// message shows the list, as for a list of strings.
			name:    "retry schedule entry without unit in file",
			yaml:    "subscriptions:\n  retry_schedule: [5s, 5]\n",
			want:    []string{`config {path}: subscriptions.retry_schedule: entry 2: cannot parse 5 as a duration: give a unit`},
			invalid: true,
		},
		{
			name:    "retry schedule entry without unit in env",
			yaml:    "-",
			env:     []string{"HERALD_SUBSCRIPTIONS_RETRY_SCHEDULE=1s, 5"},
			want:    []string{`env HERALD_SUBSCRIPTIONS_RETRY_SCHEDULE: subscriptions.retry_schedule: entry 2: cannot parse "5" as a duration`},
			invalid: true,
		},
		{
			name: "retry schedule entries that are not positive",
			yaml: "subscriptions:\n  retry_schedule: [1s, -5s, 0s]\n",
			want: []string{"subscriptions.retry_schedule: entry 2 must be positive (got -5s)",
				"subscriptions.retry_schedule: entry 3 must be positive (got 0s)"},
			invalid: true,
		},
		{
			name:    "admin token without a listener",
			yaml:    "-",
			env:     []string{"HERALD_HTTP_ADMIN_TOKEN=0123456789abcdef"},
			want:    []string{"http.listen: required when http.admin_token is set (the admin API needs a listener)"},
			invalid: true,
		},
		{
			name:    "short admin token",
			yaml:    "http:\n  listen: \":9090\"\n",
			env:     []string{"HERALD_HTTP_ADMIN_TOKEN=tooshort"},
			want:    []string{"http.admin_token: must be at least 16 characters (got 8)"},
			invalid: true,
		},
		{
			name: "missing file",
			yaml: "-missing",
			want: []string{"config {path}: open {path}: no such file or directory"},
		},
		{
			name:    "malformed YAML",
			yaml:    "relay: [\n",
			want:    []string{"config {path}: yaml: line 1:"},
			invalid: true,
		},
		{
			name:    "YAML that is not a mapping",
			yaml:    "- relay\n",
			want:    []string{"config {path}: yaml: unmarshal errors"},
			invalid: true,
		},
		{
			name:    "file and env problems reported together",
			yaml:    "relay:\n  batchsize: 5\n",
			env:     []string{"HERALD_LOG_LEVL=debug"},
			want:    []string{`config {path}: unknown key "relay.batchsize"`, "env HERALD_LOG_LEVL: unknown setting"},
			invalid: true,
		},
		{
			name:    "loaded values are validated",
			yaml:    "relay:\n  batch_size: 0\n",
			env:     []string{"HERALD_DATABASE_DSN="},
			want:    []string{"relay.batch_size: must be between 1 and 10000 (got 0)", "database.dsn: required"},
			invalid: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			switch tt.yaml {
			case "-":
			case "-missing":
				path = filepath.Join(t.TempDir(), "nope.yaml")
			default:
				path = writeFile(t, tt.yaml)
			}
			cfg, err := config.Load(path, tt.env)
			if err == nil {
				t.Fatalf("Load() = %+v, nil; want an error", cfg)
			}
			if !reflect.DeepEqual(cfg, config.Config{}) {
				t.Errorf("Load() returned %+v with its error, want the zero Config", cfg)
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "{path}", path)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load() error\n%v\ndoes not contain\n%s", err, w)
				}
			}
			if got := errors.Is(err, config.ErrInvalid); got != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalid) = %v, want %v", got, tt.invalid)
			}
			if tt.yaml == "-missing" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file error %v does not wrap fs.ErrNotExist", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Config)
		want   string // the whole message of the one expected FieldError
	}{
		{"driver empty", func(c *config.Config) { c.Database.Driver = "" }, `database.driver: required`},
		{"nats binding", func(c *config.Config) { c.NATS.Binding = "xml" }, `nats.binding: must be one of structured, binary (got "xml")`},
		{"two nats auth methods", func(c *config.Config) { c.NATS.URL = "nats://h:4222"; c.NATS.Token = "t"; c.NATS.User = "u" },
			`nats.user: only one authentication method may be set (also set: nats.token)`},
		{"nats password without user", func(c *config.Config) { c.NATS.URL = "nats://h:4222"; c.NATS.Password = "p" }, `nats.password: set only together with nats.user`},
		{"nats cert without key", func(c *config.Config) { c.NATS.URL = "nats://h:4222"; c.NATS.TLS.CertFile = "c.pem" },
			`nats.tls.key_file: nats.tls.cert_file and nats.tls.key_file go together`},
		{"embedded nats with auth", func(c *config.Config) { c.NATS.Token = "t" }, `nats.url: the embedded server takes no authentication or TLS settings`},
		{"ingest without listener", func(c *config.Config) { c.HTTP.IngestToken = "t" }, `http.listen: required when http.ingest_token is set (the ingest endpoint needs a listener)`},
		{"http listen", func(c *config.Config) { c.HTTP.Listen = "9090" }, `http.listen: must be host:port or :port (got "9090")`},
		{"admin without listener", func(c *config.Config) { c.HTTP.AdminToken = "0123456789abcdef" },
			`http.listen: required when http.admin_token is set (the admin API needs a listener)`},
		// The message gives the length only: the token is a secret.
		{"admin token short", func(c *config.Config) { c.HTTP.Listen, c.HTTP.AdminToken = ":9090", "0123456789abcde" },
			`http.admin_token: must be at least 16 characters (got 15)`},
		{"subscriptions refresh interval", func(c *config.Config) { c.Subscriptions.RefreshInterval = 0 },
			`subscriptions.refresh_interval: must be greater than 0 (got 0s)`},
		{"subscriptions timeout", func(c *config.Config) { c.Subscriptions.Timeout = -time.Second },
			`subscriptions.timeout: must be greater than 0 (got -1s)`},
		{"subscriptions concurrency", func(c *config.Config) { c.Subscriptions.Concurrency = 0 },
			`subscriptions.concurrency: must be at least 1 (got 0)`},
		{"subscriptions retry schedule empty", func(c *config.Config) { c.Subscriptions.RetrySchedule = nil },
			`subscriptions.retry_schedule: needs at least one delay`},
		{"subscriptions retry schedule entry", func(c *config.Config) { c.Subscriptions.RetrySchedule = []time.Duration{time.Second, 0} },
			`subscriptions.retry_schedule: entry 2 must be positive (got 0s)`},
		{"subscriptions disable after", func(c *config.Config) { c.Subscriptions.DisableAfter = -time.Hour },
			`subscriptions.disable_after: must not be negative (got -1h0m0s)`},
		{"subscriptions secret grace", func(c *config.Config) { c.Subscriptions.SecretGrace = -time.Minute },
			`subscriptions.secret_grace: must not be negative (got -1m0s)`},
		{"subscriptions cidr", func(c *config.Config) { c.Subscriptions.AllowCIDRs = []string{"10.0.0.0/8", "10.0.0.0/33"} },
			`subscriptions.allow_cidrs: "10.0.0.0/33" is neither a CIDR nor an IP address`},
		// The messages give the length at most: a key is a secret.
		{"subscriptions secrets key not base64", func(c *config.Config) { c.Subscriptions.SecretsKey = "hunter2!hunter2!" },
			"subscriptions.secrets_key: must be 32 bytes in base64, as `openssl rand -base64 32` prints them (it is not base64)"},
		{"subscriptions secrets key short", func(c *config.Config) { c.Subscriptions.SecretsKey = "aHVudGVyMmh1bnRlcjI=" },
			"subscriptions.secrets_key: must be 32 bytes in base64, as `openssl rand -base64 32` prints them (got 14 bytes)"},
		{"subscriptions previous key short", func(c *config.Config) {
			c.Subscriptions.SecretsKey, c.Subscriptions.PreviousSecretsKeys = testSecretsKey, []string{testSecretsKey, "aHVudGVyMmh1bnRlcjI="}
		}, "subscriptions.previous_secrets_keys: entry 2: must be 32 bytes in base64, as `openssl rand -base64 32` prints them (got 14 bytes)"},
		{"subscriptions previous key without a key", func(c *config.Config) { c.Subscriptions.PreviousSecretsKeys = []string{testSecretsKey} },
			"subscriptions.previous_secrets_keys: needs subscriptions.secrets_key: previous keys only open, the current one seals"},
		{"tracing exporter", func(c *config.Config) { c.Tracing.Exporter = "jaeger" }, `tracing.exporter: must be none or otlp (got "jaeger")`},
		{"tracing endpoint", func(c *config.Config) { c.Tracing.Endpoint = "collector:4318" }, `tracing.endpoint: must be an http(s) URL such as http://otel-collector:4318 (got "collector:4318")`},
		{"tracing endpoint redacted", func(c *config.Config) { c.Tracing.Endpoint = "grpc://otel:pw@collector:4317?key=k" },
			`tracing.endpoint: must be an http(s) URL such as http://otel-collector:4318 (got "grpc://otel:xxxxx@collector:4317?key=xxxxx")`},
		{"tracing sample ratio", func(c *config.Config) { c.Tracing.SampleRatio = 1.5 }, `tracing.sample_ratio: must be between 0 and 1 (got 1.5)`},
		{"negative retention", func(c *config.Config) { c.Relay.DeliveredRetention = -time.Hour }, `relay.delivered_retention: must not be negative (got -1h0m0s)`},
		{"delivery log retention zero", func(c *config.Config) { c.DeliveryLog.Retention = 0 }, `delivery_log.retention: must be greater than 0 (got 0s)`},
		{"delivery log retention negative", func(c *config.Config) { c.DeliveryLog.Retention = -time.Hour },
			`delivery_log.retention: must be greater than 0 (got -1h0m0s)`},
		{"driver unknown", func(c *config.Config) { c.Database.Driver = "oracle" }, `database.driver: must be one of sqlite, postgres, mysql (got "oracle")`},
		{"portal driver unknown", func(c *config.Config) { c.Enricher.PortalDriver, c.Enricher.PortalDSN = "oracle", "x" },
			`enricher.portal_driver: must be one of sqlite, postgres, mysql, or empty for database.driver (got "oracle")`},
		{"portal driver without dsn", func(c *config.Config) { c.Enricher.PortalDriver = "postgres" },
			`enricher.portal_driver: set only together with enricher.portal_dsn`},
		{"servicebus max message size", func(c *config.Config) {
			c.Adapter, c.ServiceBus.Namespace, c.ServiceBus.Queue, c.ServiceBus.MaxMessageSize = "servicebus", "ns.servicebus.windows.net", "q", -1
		}, `servicebus.max_message_size: must not be negative (got -1)`},
		{"dsn", func(c *config.Config) { c.Database.DSN = "" }, `database.dsn: required`},
		{"adapter sqs without queue", func(c *config.Config) { c.Adapter = "sqs" }, `sqs.queue_url: required when adapter=sqs`},
		{"sqs queue url", func(c *config.Config) { c.Adapter = "sqs"; c.SQS.QueueURL = "orders" }, `sqs.queue_url: must be an http(s) queue URL (got "orders")`},
		{"sqs queue url redacted", func(c *config.Config) { c.Adapter = "sqs"; c.SQS.QueueURL = "sqs://q?X-Amz-Signature=s1g" },
			`sqs.queue_url: must be an http(s) queue URL (got "sqs://q?X-Amz-Signature=xxxxx")`},
		{"sqs endpoint redacted", func(c *config.Config) {
			c.Adapter, c.SQS.QueueURL, c.SQS.Endpoint = "sqs", "https://sqs.example/1/q", "/local?token=t0k"
		}, `sqs.endpoint: must be a URL (got "/local?token=xxxxx")`},
		{"servicebus namespace connection string", func(c *config.Config) {
			c.Adapter, c.ServiceBus.Queue = "servicebus", "q"
			c.ServiceBus.Namespace = "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=k3y="
		}, `servicebus.namespace: must be a host name like herald.servicebus.windows.net, not a connection string (that is servicebus.connection_string)`},
		{"servicebus both auth", func(c *config.Config) {
			c.Adapter, c.ServiceBus.ConnectionString, c.ServiceBus.Namespace, c.ServiceBus.Queue = "servicebus", "Endpoint=sb://x/", "x.servicebus.windows.net", "q"
		}, `servicebus.namespace: set servicebus.connection_string or servicebus.namespace, not both`},
		{"servicebus queue and topic", func(c *config.Config) {
			c.Adapter, c.ServiceBus.Namespace, c.ServiceBus.Queue, c.ServiceBus.Topic = "servicebus", "x.servicebus.windows.net", "q", "t"
		}, `servicebus.queue: exactly one of servicebus.queue or servicebus.topic is required`},
		{"servicebus namespace url", func(c *config.Config) {
			c.Adapter, c.ServiceBus.Namespace, c.ServiceBus.Queue = "servicebus", "sb://x.servicebus.windows.net", "q"
		}, `servicebus.namespace: must be a host name like herald.servicebus.windows.net, not a URL (got "sb://x.servicebus.windows.net")`},
		{"webhook secret and file", func(c *config.Config) {
			c.Adapter, c.Webhook.URL, c.Webhook.Secrets, c.Webhook.SecretsFile = "webhook", "https://x.example/h", []string{testSecret}, "/s"
		}, `webhook.secrets_file: set webhook.secrets or webhook.secrets_file, not both`},
		{"webhook bad secret", func(c *config.Config) {
			c.Adapter, c.Webhook.URL, c.Webhook.Secrets = "webhook", "https://x.example/h", []string{"hunter2hunter2"}
		}, `webhook.secrets: entry 1: webhooks: invalid secret: must start with "whsec_"`},
		{"webhook url", func(c *config.Config) {
			c.Adapter, c.Webhook.URL, c.Webhook.Secrets = "webhook", "ftp://x", []string{testSecret}
		}, `webhook.url: must be an http(s) URL (got "ftp://x")`},
		{"webhook cidr", func(c *config.Config) {
			c.Adapter, c.Webhook.URL, c.Webhook.Secrets, c.Webhook.AllowCIDRs = "webhook", "https://x.example/h", []string{testSecret}, []string{"10.0.0.0/33"}
		}, `webhook.allow_cidrs: "10.0.0.0/33" is neither a CIDR nor an IP address`},
		{"webhook url redacted", func(c *config.Config) {
			c.Adapter, c.Webhook.URL, c.Webhook.Secrets = "webhook", "ftp://u:pw@x/h?token=t0k&v=1#f", []string{testSecret}
		}, `webhook.url: must be an http(s) URL (got "ftp://u:xxxxx@x/h?token=xxxxx&v=xxxxx#xxxxx")`},
		{"destination name", func(c *config.Config) {
			c.Destinations = []config.Destination{partnerHook(), partnerHook()}
		}, `destinations[1].name: "partner" is used by an earlier destination`},
		{"destination main", func(c *config.Config) {
			d := partnerHook()
			d.Name = "main"
			c.Destinations = []config.Destination{d}
		}, `destinations[0].name: "main" is the main adapter's destination`},
		{"destination glob", func(c *config.Config) {
			d := partnerHook()
			d.Types = []string{"io.[x"}
			c.Destinations = []config.Destination{d}
		}, `destinations[0].types: invalid type glob "io.[x"`},
		{"destination block", func(c *config.Config) {
			d := partnerHook()
			d.Webhook.URL = ""
			c.Destinations = []config.Destination{d}
		}, `destinations[0].webhook.url: required when adapter=webhook`},
		{"destination on the main stream", func(c *config.Config) {
			d := partnerHook()
			d.Adapter = "nats"
			c.Destinations = []config.Destination{d}
		}, `destinations[0].nats.stream: "HERALD" is the main adapter's stream on the same server: JetStream would drop this destination's copies as duplicates`},
		{"adapter unknown", func(c *config.Config) { c.Adapter = "kafka" }, `adapter: must be one of nats, sqs, servicebus, webhook (got "kafka")`},
		{"adapter empty", func(c *config.Config) { c.Adapter = "" }, `adapter: must be one of nats, sqs, servicebus, webhook (got "")`},
		{"nats url", func(c *config.Config) { c.NATS.URL = "" }, `nats.url: required when adapter=nats`},
		{"nats url scheme", func(c *config.Config) { c.NATS.URL = "nats://a:4222,http://b:80" }, `nats.url: entry 2 must be a nats:// or tls:// URL with a host (got "http://b:80")`},
		{"nats url redacted", func(c *config.Config) { c.NATS.URL = "ws://user:secret@b:80" }, `nats.url: entry 1 must be a nats:// or tls:// URL with a host (got "ws://user:xxxxx@b:80")`},
		{"nats url token and query redacted", func(c *config.Config) { c.NATS.URL = "nats://a:4222,ws://t0ken@b:80/?jwt=j" },
			`nats.url: entry 2 must be a nats:// or tls:// URL with a host (got "ws://xxxxx@b:80/?jwt=xxxxx")`},
		{"nats url unparsable", func(c *config.Config) { c.NATS.URL = "nats://a b:%zz" }, `nats.url: entry 1 is not a valid URL`},
		{"nats url without host", func(c *config.Config) { c.NATS.URL = "nats://" }, `nats.url: entry 1 must be a nats:// or tls:// URL with a host (got "nats://")`},
		{"embedded store dir", func(c *config.Config) { c.NATS.EmbeddedStoreDir = "" }, `nats.embedded_store_dir: required when nats.url=embedded`},
		{"stream", func(c *config.Config) { c.NATS.Stream = "" }, `nats.stream: required when adapter=nats`},
		{"stream name", func(c *config.Config) { c.NATS.Stream = "herald.events" }, `nats.stream: must not contain whitespace or any of . * > / \ (got "herald.events")`},
		{"stream subjects", func(c *config.Config) { c.NATS.StreamSubjects = nil }, `nats.stream_subjects: required when nats.provision_stream=true`},
		{"stream subject entry", func(c *config.Config) { c.NATS.StreamSubjects = []string{"a.>", ""} }, `nats.stream_subjects: entry 2 must be a non-empty subject without whitespace (got "")`},
		{"subject template", func(c *config.Config) { c.NATS.SubjectTemplate = "" }, `nats.subject_template: required when adapter=nats`},
		{"subject template spaces", func(c *config.Config) { c.NATS.SubjectTemplate = "herald {type}" }, `nats.subject_template: must not contain whitespace (got "herald {type}")`},
		{"duplicate window", func(c *config.Config) { c.NATS.DuplicateWindow = 0 }, `nats.duplicate_window: must be greater than 0 (got 0s)`},
		{"max pending acks", func(c *config.Config) { c.NATS.MaxPendingAcks = 0 }, `nats.max_pending_acks: must be at least 1 (got 0)`},
		{"ack timeout", func(c *config.Config) { c.NATS.AckTimeout = -time.Second }, `nats.ack_timeout: must be greater than 0 (got -1s)`},
		{"batch size low", func(c *config.Config) { c.Relay.BatchSize = 0 }, `relay.batch_size: must be between 1 and 10000 (got 0)`},
		{"batch size high", func(c *config.Config) { c.Relay.BatchSize = 10001 }, `relay.batch_size: must be between 1 and 10000 (got 10001)`},
		{"poll interval", func(c *config.Config) { c.Relay.PollInterval = 0 }, `relay.poll_interval: must be greater than 0 (got 0s)`},
		{"lease too short", func(c *config.Config) {
			c.Relay.Lease = 500 * time.Millisecond
			c.NATS.AckTimeout = 100 * time.Millisecond
		}, `relay.lease: must be at least 1s (got 500ms)`},
		{"dead letter policy", func(c *config.Config) { c.Relay.DeadLetterPolicy = "drop" }, `relay.dead_letter_policy: must be one of park_key, skip (got "drop")`},
		{"max attempts", func(c *config.Config) { c.Relay.MaxAttempts = 0 }, `relay.max_attempts: must be at least 1 (got 0)`},
		{"backoff min", func(c *config.Config) {
			c.Relay.BackoffMin = 0
		}, `relay.backoff_min: must be greater than 0 (got 0s)`},
		{"backoff max", func(c *config.Config) { c.Relay.BackoffMax = 500 * time.Millisecond }, `relay.backoff_max: must be at least relay.backoff_min=1s (got 500ms)`},
		{"shutdown timeout", func(c *config.Config) { c.Relay.ShutdownTimeout = 0 }, `relay.shutdown_timeout: must be greater than 0 (got 0s)`},
		{"log level", func(c *config.Config) { c.Log.Level = "trace" }, `log.level: must be one of debug, info, warn, error (got "trace")`},
		{"log format", func(c *config.Config) { c.Log.Format = "yaml" }, `log.format: must be one of text, json (got "yaml")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Validate() =\n%v\nwant exactly\n%s", err, tt.want)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Key+": "+fe.Reason != tt.want {
				t.Errorf("Validate() = %v, want a *FieldError %q", err, tt.want)
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("Validate() = %v does not wrap ErrInvalid", err)
			}
		})
	}
}

// TestLoadEmptyRetrySchedule: "[]" in the file, and an empty variable,
// mean unset for every list (decode says so), so they keep the default
// schedule rather than failing validation for having no delay.
func TestLoadEmptyRetrySchedule(t *testing.T) {
	for name, load := range map[string]func() (config.Config, error){
		"file": func() (config.Config, error) {
			return config.Load(writeFile(t, "subscriptions:\n  retry_schedule: []\n"), nil)
		},
		"env": func() (config.Config, error) {
			return config.Load("", []string{"HERALD_SUBSCRIPTIONS_RETRY_SCHEDULE="})
		},
	} {
		cfg, err := load()
		if err != nil {
			t.Errorf("%s: Load() = %v, want the default schedule", name, err)
			continue
		}
		if !slices.Equal(cfg.Subscriptions.RetrySchedule, config.DefaultRetrySchedule()) {
			t.Errorf("%s: retry_schedule = %v, want the default %v", name, cfg.Subscriptions.RetrySchedule, config.DefaultRetrySchedule())
		}
	}
}

// TestDefaultRetrySchedule holds the default to what its documentation
// promises, and to a fresh slice per call, since Default() hands it out.
func TestDefaultRetrySchedule(t *testing.T) {
	s := config.DefaultRetrySchedule()
	var total time.Duration
	for _, d := range s {
		total += d
	}
	if len(s)+1 != 9 || total < 10*time.Hour+30*time.Minute || total > 11*time.Hour {
		t.Errorf("DefaultRetrySchedule() = %v: %d attempts over %s, want nine over about 10h45m", s, len(s)+1, total)
	}
	s[0] = time.Hour
	if config.DefaultRetrySchedule()[0] == time.Hour || config.Default().Subscriptions.RetrySchedule[0] == time.Hour {
		t.Error("DefaultRetrySchedule() returns a shared slice")
	}
}

// TestValidateOtherAdapterSkipsNATS: settings of an adapter not in use
// cannot block boot.
func TestValidateOtherAdapterSkipsNATS(t *testing.T) {
	c := config.Default()
	c.Adapter = "webhook"
	c.NATS = config.NATS{}
	err := c.Validate()
	if err == nil || err.Error() != "webhook.url: required when adapter=webhook\n"+
		"webhook.secrets: one of webhook.secrets or webhook.secrets_file is required when adapter=webhook" {
		t.Fatalf("Validate() = %v, want only the webhook block's errors", err)
	}
}

// `herald enrich` reads the databases, the enricher, the log and what
// tells the main destination's size limit: a setting it never reads, such
// as a webhook adapter's secrets, does not stop it, while serve, which
// reads everything, is stopped by it.
func TestValidateForEnrichChecksOnlyWhatEnrichReads(t *testing.T) {
	webhookMain := func(c *config.Config) { c.Adapter, c.NATS = "webhook", config.NATS{} }
	for _, tt := range []struct {
		name   string
		mutate func(*config.Config)
		enrich string // the error of ValidateFor(UseEnrich), "" for none
	}{
		{"webhook without url or secrets", webhookMain, ""},
		{"broken relay and http", func(c *config.Config) { c.Relay.BatchSize, c.HTTP.IngestToken = 0, "t" }, ""},
		{"a destination's secrets", func(c *config.Config) {
			c.Destinations = []config.Destination{{Name: "partner", Adapter: "webhook", Webhook: config.Webhook{URL: "https://p.example/h"}}}
		}, ""},
		{"servicebus without entity, bad size", func(c *config.Config) { c.Adapter, c.ServiceBus.MaxMessageSize = "servicebus", -5 },
			`servicebus.max_message_size: must not be negative (got -5)`},
		// NATS and SQS are asked for their limit, so what reaches them counts.
		{"nats url", func(c *config.Config) { c.NATS.URL = "http://h:4222" }, `nats.url: entry 1 must be a nats:// or tls:// URL with a host (got "http://h:4222")`},
		{"sqs queue", func(c *config.Config) { c.Adapter = "sqs" }, `sqs.queue_url: required when adapter=sqs`},
		{"the databases", func(c *config.Config) { webhookMain(c); c.Database.DSN = "" }, `database.dsn: required`},
		{"the portal", func(c *config.Config) { webhookMain(c); c.Enricher.PortalDriver = "mysql" },
			`enricher.portal_driver: set only together with enricher.portal_dsn`},
		{"the log", func(c *config.Config) { webhookMain(c); c.Log.Level = "loud" },
			`log.level: must be one of debug, info, warn, error (got "loud")`},
		{"the adapter's name", func(c *config.Config) { c.Adapter = "kafka" },
			`adapter: must be one of nats, sqs, servicebus, webhook (got "kafka")`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.mutate(&c)
			err := c.ValidateFor(config.UseEnrich)
			if got := fmt.Sprint(err); (err == nil) != (tt.enrich == "") || (err != nil && got != tt.enrich) {
				t.Errorf("ValidateFor(UseEnrich) = %v, want %q", err, tt.enrich)
			}
			if err := c.Validate(); err == nil {
				t.Errorf("Validate() passed; the case is meant to be one serve refuses")
			}
		})
	}
}

// LoadFor reads as strictly as Load: only validation is narrowed.
func TestLoadForEnrich(t *testing.T) {
	path := writeFile(t, "adapter: webhook\nenricher:\n  portal_dsn: /tmp/portal.db\n  portal_driver: sqlite\n")
	if _, err := config.Load(path, nil); err == nil || !strings.Contains(err.Error(), "webhook.secrets") {
		t.Errorf("Load of a webhook config without secrets: %v, want an error naming webhook.secrets", err)
	}
	c, err := config.LoadFor(path, []string{"HERALD_ENRICHER_PORTAL_DSN=/data/portal.db"}, config.UseEnrich)
	if err != nil {
		t.Fatalf("LoadFor(UseEnrich): %v", err)
	}
	if portal, ok := c.Enricher.Portal(c.Database); !ok || portal != (config.Database{Driver: "sqlite", DSN: "/data/portal.db"}) {
		t.Errorf("Portal() = %+v, %v; want the environment's DSN with the file's driver", portal, ok)
	}
	if _, err := config.LoadFor(writeFile(t, "adapter: webhook\nrelay:\n  batchsize: 1\n"), nil, config.UseEnrich); err == nil ||
		!errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), `unknown key "relay.batchsize"`) {
		t.Errorf("LoadFor with an unknown key: %v, want it refused", err)
	}
	// Without a portal DSN the portal's tables are the outbox database's;
	// its driver defaults to database.driver.
	d := config.Default()
	if _, ok := d.Enricher.Portal(d.Database); ok {
		t.Error("Portal() of the default config: want none")
	}
	d.Enricher.PortalDSN = "postgres://portal@db/portal"
	if portal, _ := d.Enricher.Portal(d.Database); portal.Driver != d.Database.Driver {
		t.Errorf("portal driver %q, want database.driver %q", portal.Driver, d.Database.Driver)
	}
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// testSecretsKey is a subscriptions.secrets_key: 32 bytes in base64.
const testSecretsKey = "XI83WkSVvoWO1NOiqjCb0f/mMIQ9BKHO4DgiY7Bnw/Q="

// The secrets keys come from the environment, as the chart passes them
// from a Kubernetes Secret, and make a keyring that seals under the first.
func TestSecretsKeysFromEnv(t *testing.T) {
	const previous = "YauWDKm/usVvTk9S5Olt/RGKTJ7ulcVErkE/L90sbKs="
	c, err := config.Load(writeFile(t, "subscriptions:\n  allow_plaintext_secrets: true\n"), []string{
		"HERALD_SUBSCRIPTIONS_SECRETS_KEY=" + testSecretsKey,
		"HERALD_SUBSCRIPTIONS_PREVIOUS_SECRETS_KEYS=" + previous + "," + testSecretsKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Subscriptions
	if s.SecretsKey != testSecretsKey || len(s.PreviousSecretsKeys) != 2 || s.PreviousSecretsKeys[0] != previous || !s.AllowPlaintextSecrets {
		t.Fatalf("Subscriptions = %+v", s)
	}
	keys, err := s.Keyring()
	if err != nil || keys == nil {
		t.Fatalf("Keyring() = %v, %v", keys, err)
	}
	if ids := keys.KeyIDs(); len(ids) != 2 {
		t.Errorf("KeyIDs = %v, want the current key and one previous (the current repeated counts once)", ids)
	}
	if keys, err := config.Default().Subscriptions.Keyring(); keys != nil || err != nil {
		t.Errorf("Keyring() without a key = %v, %v; want nil, nil", keys, err)
	}
}

func partnerHook() config.Destination {
	d := config.Default()
	return config.Destination{Name: "partner", Types: []string{"io.herald.portal.input_port.*"}, Adapter: "webhook",
		NATS: d.NATS, ServiceBus: d.ServiceBus,
		Webhook: config.Webhook{URL: "https://partner.example/h", Secrets: []string{testSecret}, Timeout: time.Second, Concurrency: 1}}
}

// Destinations are read from the file, each starting from the adapter
// blocks' defaults; a mistake inside one is named by its place in the list.
func TestDestinationsFromFile(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       string // error; "" for none
	}{
		{"two destinations", `
destinations:
  - name: partner
    types: ["io.herald.portal.input_port.*"]
    adapter: webhook
    webhook:
      url: https://partner.example/h
      secrets: [` + testSecret + `]
  - name: archive
    adapter: nats
    nats:
      stream: ARCHIVE
      stream_subjects: ["archive.>"]
      subject_template: archive.{type}
`, ""},
		{"unknown key", `
destinations:
  - name: partner
    adapter: webhook
    webhook: {url: "https://p.example", secrets: [` + testSecret + `], retries: 3}
`, `unknown key "destinations[0].webhook.retries"`},
		{"bad value", `
destinations:
  - name: partner
    adapter: webhook
    webhook: {url: "https://p.example", secrets: [` + testSecret + `], timeout: 5}
`, `destinations[0].webhook.timeout: cannot parse 5 as a duration`},
		{"not a list", "destinations: partner\n", `destinations: must be a list of mappings in the config file (got "partner")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "herald.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path, nil)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrInvalid) {
					t.Fatalf("Load = %v, want an invalid-config error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Destinations) != 2 {
				t.Fatalf("destinations = %+v", cfg.Destinations)
			}
			p, a := cfg.Destinations[0], cfg.Destinations[1]
			if p.Name != "partner" || p.Adapter != "webhook" || p.Webhook.Timeout != 15*time.Second || p.Webhook.Concurrency != 4 ||
				len(p.Types) != 1 || p.Webhook.Secrets[0] != testSecret {
				t.Errorf("partner = %+v, want its keys over the webhook defaults", p)
			}
			if a.NATS.URL != "embedded" || a.NATS.Stream != "ARCHIVE" || a.NATS.AckTimeout != 5*time.Second || len(a.Types) != 0 {
				t.Errorf("archive = %+v, want its keys over the NATS defaults", a)
			}
		})
	}
	if _, err := config.Load("", []string{"HERALD_DESTINATIONS=partner"}); err == nil ||
		!strings.Contains(err.Error(), "cannot be set from the environment") {
		t.Errorf("HERALD_DESTINATIONS: %v, want an error saying the file is the place", err)
	}
}

// TestValidateNamesKnownKeys: every key Validate blames is a real key, so
// its messages point at something a user can set.
func TestValidateNamesKnownKeys(t *testing.T) {
	var broken config.Config // every setting zero: nearly everything fails
	broken.Adapter = "nats"
	broken.NATS.URL = "embedded"
	broken.Relay.BackoffMin = time.Second
	err := broken.Validate()
	if err == nil {
		t.Fatal("Validate() of a zero Config = nil")
	}
	var count int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			t.Errorf("%v is not a *FieldError", e)
			continue
		}
		count++
		if !slices.Contains(config.Keys(), fe.Key) {
			t.Errorf("Validate() blames unknown key %q: %v", fe.Key, fe)
		}
	}
	if count < 15 {
		t.Errorf("Validate() of a zero Config found %d problems, want all of them:\n%v", count, err)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
