package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/bench"
)

func benchCmd(e env) *cobra.Command {
	var (
		path, output, cpuProfile string
		opts                     bench.Options
		verbose                  bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput, commit→ack latency and resources on the configured database and broker",
		Long: `Measure Herald end to end, on the configured database and broker, in one run:
  1. the broker ceiling: events published straight with the JetStream client;
  2. a reference relay: the naive pipeline (delete a batch returning it,
     publish it, await the acks, commit), one worker per --relays;
  3. Herald's relays draining each --backlogs size, as a multiple of 1 and 2;
  4. the writers' commit rate, one row per transaction, into the outbox with
     its wake-up triggers and into a copy of the table without them;
  5. commit→ack latency at a fixed offered rate;
  6. the process's CPU and memory.
Each phase starts from an outbox without bench rows and an empty stream, and
the stream is checked after each for lost or duplicated events.

Without --config it runs the embedded default: a temporary SQLite outbox and an
in-process JetStream server. An SQLite outbox is always a temporary file. A
PostgreSQL or MySQL/MariaDB outbox must be migrated and EMPTY, and no relay may
serve it meanwhile (use a fresh database or schema): the bench deletes only the
rows it wrote (event type ` + bench.EventType + `), and the writers' phase creates
the table ` + bench.CopyTable + ` beside the outbox and drops it again. Events go
to the stream ` + bench.Stream + ` (subjects ` + bench.StreamSubjects + `), deleted
afterwards; the configured stream is not touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output: must be text or json (got %q)", output)}
			}
			cfg, err := e.loadConfig(path)
			if err != nil {
				return err
			}
			logCfg := cfg.Log
			if !verbose {
				logCfg.Level = "warn"
			}
			opts.Config = cfg
			opts.Logger = e.logger(logCfg)
			opts.Progress = e.stderr
			if opts.Keys == 0 {
				opts.Keys = -1 // --keys 0: no partition key
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer func() { _ = f.Close() }()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			rep, err := bench.Run(cmd.Context(), opts)
			if errors.Is(err, bench.ErrInvalidOptions) {
				return usageError{err}
			}
			if rep.Setup.Relays > 0 { // print what was measured, also when a later phase failed
				if perr := printReport(e, output, rep); perr != nil {
					return errors.Join(err, perr)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&path, "config", "c", "", "YAML config file (HERALD_* environment variables override it)")
	f.IntVar(&opts.Events, "events", bench.DefaultEvents, "events of the broker ceiling and the reference relay")
	f.IntSliceVar(&opts.Backlogs, "backlogs", nil, "backlog sizes Herald's relay drains, one run each, e.g. 10000,50000,200000 (default: --events)")
	f.IntVar(&opts.Rate, "rate", bench.DefaultRate, "offered rate of the latency phase, events/s, one per transaction")
	f.DurationVar(&opts.Duration, "duration", bench.DefaultDuration, "length of the latency phase")
	f.DurationVar(&opts.WriteDuration, "write-duration", 0, "how long the writers commit to each table of the writers' phase (default: --duration / 2)")
	f.IntVar(&opts.Producers, "producers", bench.DefaultProducers, "goroutines committing the latency phase's events, and writers of the writers' phase")
	f.IntVar(&opts.Relays, "relays", bench.DefaultRelays, "relays in this process sharing the outbox, each with its own connections (PostgreSQL, MySQL)")
	f.IntVar(&opts.Keys, "keys", bench.DefaultKeys, "distinct partition keys the events cycle through; 0 for none")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	f.BoolVarP(&verbose, "verbose", "v", false, "show Herald's own logs")
	return cmd
}

func printReport(e env, output string, rep bench.Report) error {
	if output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(e.stdout)
}
