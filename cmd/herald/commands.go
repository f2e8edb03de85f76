package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/demo"
	"github.com/heraldhq/herald/pkg/outbox"
)

func demoCmd(e env) *cobra.Command {
	var dir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole data path on this machine: portal sample → enricher → SQLite outbox → relay → in-process JetStream → consumer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := "warn"
			if verbose {
				level = "info"
			}
			_, err := demo.Run(cmd.Context(), demo.Options{
				Dir:    dir,
				Out:    e.stdout,
				Logger: e.logger(config.Log{Level: level}),
			})
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "keep the SQLite file and JetStream data in this directory (default: a temporary one, removed afterwards)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show Herald's own logs")
	return cmd
}

func serveCmd(e env) *cobra.Command {
	var path string
	var migrate bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the relay until interrupted (SIGINT/SIGTERM drains in-flight events first)",
		Long: "Run the relay. Without --config it runs the embedded default: an SQLite outbox in ./herald.db\n" +
			"and an in-process JetStream server storing in ./herald-data (migrated automatically).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := e.loadConfig(path)
			if err != nil {
				return err
			}
			log := e.logger(cfg.Log)
			a, err := app.Open(cmd.Context(), cfg, app.Options{Migrate: migrate || path == "", Logger: log})
			if err != nil {
				return err
			}
			defer func() { _ = a.Close() }()
			log.Info("herald serving", "adapter", cfg.Adapter, "broker", a.Target(), "database", cfg.Database.Driver)
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "YAML config file (HERALD_* environment variables override it)")
	cmd.Flags().BoolVar(&migrate, "migrate", false, "apply missing outbox migrations before serving")
	return cmd
}

func migrateCmd(e env) *cobra.Command {
	var path, dialect string
	var print bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the outbox schema (--print: show the SQL instead, for your own migration tool)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := e.loadConfig(path)
			if err != nil {
				return err
			}
			if print {
				if dialect == "" {
					dialect = cfg.Database.Driver
				}
				script, err := outbox.MigrationScript(dialect)
				if errors.Is(err, outbox.ErrUnsupportedDialect) {
					return usageError{fmt.Errorf("--dialect: %w", err)}
				}
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(e.stdout, script)
				return err
			}
			db, err := app.OpenDB(cfg.Database)
			if err != nil {
				return err
			}
			if sqlDB, err := db.DB(); err == nil {
				defer func() { _ = sqlDB.Close() }()
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			applied, err := outbox.Migrate(ctx, db)
			if err != nil {
				return err
			}
			_, latest, err := outbox.SchemaVersion(ctx, db)
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintf(e.stdout, "outbox schema is up to date (version %d)\n", latest)
			} else {
				fmt.Fprintf(e.stdout, "applied migrations %v; outbox schema at version %d\n", applied, latest)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "YAML config file (HERALD_* environment variables override it)")
	cmd.Flags().BoolVar(&print, "print", false, "print the SQL and exit without touching a database")
	cmd.Flags().StringVar(&dialect, "dialect", "", fmt.Sprintf("dialect for --print %v (default: database.driver)", outbox.Dialects()))
	return cmd
}

func versionCmd(e env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Herald's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			version, commit, goVersion := "devel", "unknown", "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				if v := bi.Main.Version; v != "" && v != "(devel)" {
					version = v
				}
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						commit = s.Value
					}
				}
			}
			_, err := fmt.Fprintf(e.stdout, "herald %s (commit %s, %s)\n", version, commit, goVersion)
			return err
		},
	}
}
