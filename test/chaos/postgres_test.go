//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/outbox"
)

// pgDirPattern names the suite's cluster directories, so that a later run
// can find the clusters of a run that was killed before its cleanup.
const pgDirPattern = "herald-chaos-pg-*"

// postgres is a PostgreSQL cluster of the suite's own, in a directory the
// postgres OS user owns: PostgreSQL refuses to run as root, so when the
// suite runs as root every initdb and pg_ctl goes through runuser.
type postgres struct {
	dir  string // the cluster directory: data/, the log, the socket
	port int
	bin  string
}

// database is the database the outbox, and the load generator's own
// table, live in.
const database = "chaos"

// DSN is the chaos database on the cluster.
func (p *postgres) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, database)
}

func (p *postgres) data() string    { return filepath.Join(p.dir, "data") }
func (p *postgres) logPath() string { return filepath.Join(p.dir, "postgres.log") }

// startPostgres creates and starts a cluster, with the chaos database;
// the test's cleanup stops it at once and removes it, after copying its
// log to keep.
func startPostgres(t *testing.T, keep string) *postgres {
	t.Helper()
	dir, err := os.MkdirTemp("", pgDirPattern)
	if err != nil {
		t.Fatal(err)
	}
	p := &postgres{dir: dir, bin: suite.pgBin}
	t.Cleanup(func() {
		if err := p.ctl(context.Background(), "stop", "-m", "immediate"); err != nil && !errors.Is(err, errNotRunning) {
			t.Logf("stop postgres: %v", err)
		}
		if err := copyFile(p.logPath(), filepath.Join(keep, "postgres.log")); err != nil {
			t.Logf("keep the postgres log: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	// Who started the cluster: reapLeftoverClusters leaves it alone while
	// that process lives.
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chownToPostgres(dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if out, err := p.command(ctx, "initdb", "-D", p.data(), "-A", "trust", "-U", "postgres", "-E", "UTF8",
		"--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.port = freePort(t)
	// The options are kept in postmaster.opts, so that pg_ctl restart
	// brings the server back exactly as it was.
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c max_connections=300", p.port, dir)
	if err := p.ctl(ctx, "start", "-o", opts); err != nil {
		t.Fatal(err)
	}
	admin, err := outbox.OpenPostgres(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(admin)
	if err := admin.WithContext(ctx).Exec("CREATE DATABASE " + database).Error; err != nil {
		t.Fatalf("create database %s: %v", database, err)
	}
	return p
}

// restart is the fault of scenario c: a fast shutdown (open transactions
// are rolled back, connections cut) and a start with the same options.
func (p *postgres) restart(ctx context.Context) error {
	return p.ctl(ctx, "restart", "-m", "fast")
}

var errNotRunning = errors.New("postgres is not running")

// ctl runs pg_ctl on the cluster and waits for it to finish the action.
// The server's output goes to the log file, never to pg_ctl's: a server
// writing to a pipe of ours would keep the pipe open for its whole life.
func (p *postgres) ctl(ctx context.Context, action string, args ...string) error {
	if action == "stop" {
		if _, err := os.Stat(filepath.Join(p.data(), "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
			return errNotRunning
		}
	}
	all := append([]string{action, "-D", p.data(), "-l", p.logPath(), "-w", "-t", "120"}, args...)
	out, err := p.command(ctx, "pg_ctl", all...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w\n%s\n%s", action, err, out, tail(p.logPath(), 20))
	}
	return nil
}

// command runs one of PostgreSQL's programs as the postgres OS user when
// the suite runs as root.
func (p *postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bin, name)
	if os.Geteuid() != 0 {
		return exec.CommandContext(ctx, path, args...)
	}
	return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
}

func chownToPostgres(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user to run it as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

// reapLeftoverClusters stops and removes the clusters of earlier runs that
// died before their cleanup (a -timeout panic skips it): only those whose
// owning test process is gone, so that a concurrent run keeps its own.
func reapLeftoverClusters() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pgDirPattern))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(string(b)); err == nil && syscall.Kill(pid, 0) == nil {
			continue
		}
		p := &postgres{dir: dir, bin: suite.pgBin}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = p.ctl(ctx, "stop", "-m", "immediate")
		cancel()
		if err != nil && !errors.Is(err, errNotRunning) {
			fmt.Fprintf(os.Stderr, "chaos: leftover cluster %s: %v\n", dir, err)
			continue
		}
		_ = os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "chaos: removed the leftover cluster %s of an earlier run\n", dir)
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		_ = dst.Close()
		return err
	}
	return dst.Close()
}
