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
	"github.com/heraldhq/herald/internal/redact"
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
	// secrets are those of the config a command loaded (and of flags such
	// as --portal-dsn): its log lines and its error are shown without them.
	secrets *redact.Secrets
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	e := env{stdout: stdout, stderr: stderr, environ: environ, secrets: &redact.Secrets{}}
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
	fmt.Fprintf(stderr, "herald: %s\n", e.secrets.Text(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, config.ErrInvalid) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitError
}

// loadConfig reads the config file (if any) and HERALD_* overrides, and
// learns its secrets.
func (e env) loadConfig(path string) (config.Config, error) {
	cfg, err := config.Load(path, e.environ)
	if err != nil {
		return cfg, usageError{err}
	}
	e.secrets.Merge(cfg.Secrets())
	return cfg, nil
}

func (e env) logger(cfg config.Log) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(e.stderr, opts)
	if cfg.Format == "json" {
		h = slog.NewJSONHandler(e.stderr, opts)
	}
	return slog.New(e.secrets.Handler(h))
}
