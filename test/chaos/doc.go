// Package chaos is Herald's chaos suite: real `herald serve` processes
// relaying from their own PostgreSQL 15 cluster to their own nats-server,
// both started on 127.0.0.1 on free ports, while faults are injected —
// relays SIGKILLed, the broker killed for 30 s and for minutes, the database
// restarted, a webhook endpoint answering slowly, sustained load. Every
// scenario ends by reading the whole JetStream stream and comparing it with
// the events the load generator committed: lost, stored twice, out of their
// key's commit order, dead-lettered.
//
// The tests sit behind the build tag chaos, because they take minutes and
// start servers; the everyday `go test ./...` compiles only this file:
//
//	go test -tags chaos -timeout 60m -v ./test/chaos/
//
// docs/chaos.md describes each scenario, the environment variables that
// choose their sizes and durations, and the figures measured.
package chaos
