package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/config"
)

// Exit codes: scripts tell a bad invocation from a failed run.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks errors the user fixes by changing the command or config.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// env is what every command gets from outside: no command reads os.* itself.
type env struct {
	stdout, stderr io.Writer
	environ        []string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	e := env{stdout: stdout, stderr: stderr, environ: environ}
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Herald relays business events from a transactional outbox to your message broker",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(demoCmd(e), serveCmd(e), migrateCmd(e), versionCmd(e), outboxCmd(e), statusCmd(e), benchCmd(e))
	root.AddCommand(schemaCmd(e))
	root.AddCommand(enrichCmd(e))
	root.AddCommand(webhooksCmd(e))

	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "herald: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, config.ErrInvalid) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitError
}

// loadConfig reads the config file (if any) and HERALD_* overrides.
func (e env) loadConfig(path string) (config.Config, error) {
	cfg, err := config.Load(path, e.environ)
	if err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

func (e env) logger(cfg config.Log) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}
