// Package config is Herald's configuration: one typed [Config], loaded once
// at boot from defaults, a YAML file and HERALD_* environment variables, and
// validated before anything starts.
//
// # Layers
//
// [Load] starts from [Default], applies the YAML file over it, then the
// environment over that; a later layer wins key by key. A key the file leaves
// out, or gives no value (`batch_size:`), keeps the default; a list in a later
// layer replaces the whole list below it. The file may be empty, and
// [ExampleYAML] (herald.example.yaml in the source) lists every key with its
// default.
//
// Durations are Go duration strings ("500ms", "2m", "1h30m"); a bare number
// is refused rather than read as nanoseconds. Values are not coerced across
// types: `batch_size: 1.5` and `dsn: 42` are errors.
//
// # Environment
//
// Every key has one variable: HERALD_ followed by the key upper-cased with
// dots turned into underscores, so relay.batch_size is HERALD_RELAY_BATCH_SIZE
// and nats.url is HERALD_NATS_URL ([EnvName]). Because keys contain
// underscores themselves, a variable is matched against the names of the
// known keys, never split on underscores. Lists are comma-separated
// (HERALD_NATS_STREAM_SUBJECTS="orders.>,billing.>"). A variable that is set,
// even to "", overrides the file.
//
// A HERALD_* variable that names no setting is an error, so a typo cannot
// silently leave a default in place. Two kinds are not settings and are
// ignored: HERALD_REQUIRE_SERVICES and anything beginning with HERALD_TEST_,
// which the test suites and CI read.
//
// The environment is passed to [Load] (usually os.Environ()); nothing in
// Herald reads environment variables on its own.
//
// # Errors
//
// Every error names what it is about: the key, and for values that could not
// be loaded, where they came from.
//
//	config herald.yaml: unknown key "relay.batchsize"
//	env HERALD_RELAY_BATCH_SIZE: relay.batch_size: cannot parse "abc" as int
//	relay.batch_size: must be between 1 and 10000 (got 0)
//	nats.url: required when adapter=nats
//
// [Load] and [Config.Validate] report every problem at once, joined. Each
// problem with a setting is a [*FieldError]; those and unknown keys wrap
// [ErrInvalid].
//
// # Per command
//
// A command validates the settings it reads and no others ([Use]): `herald
// enrich` loads with [LoadFor] and [UseEnrich], so a webhook adapter's
// secrets, which only serve's relay uses, do not stop it. Reading stays as
// strict for every command: an unknown key is an error whatever reads it.
package config
