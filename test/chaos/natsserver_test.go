//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServer is a nats-server process with JetStream of the suite's own.
// Killed, it comes back on the same port with the same store directory,
// as a crashed broker restarted by its supervisor would.
type natsServer struct {
	bin, store, logPath string
	port                int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func startNATS(t *testing.T, dir string) *natsServer {
	t.Helper()
	n := &natsServer{
		bin:     suite.natsServer,
		store:   filepath.Join(t.TempDir(), "jetstream"),
		logPath: filepath.Join(dir, "nats-server.log"),
		port:    freePort(t),
	}
	t.Cleanup(n.kill)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := n.start(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// URL is where clients connect.
func (n *natsServer) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// start runs the server and returns once JetStream answers.
func (n *natsServer) start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("nats-server already running (pid %d)", n.cmd.Process.Pid)
	}
	log, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }() // the child has its own descriptor
	cmd := exec.Command(n.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-js", "-sd", n.store, "-n", "herald-chaos")
	cmd.Stdout, cmd.Stderr = log, log
	// Dies with the suite, even when a -timeout panic skips the cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	n.cmd, n.exited = cmd, exited
	for {
		if err := jetStreamAnswers(ctx, n.URL()); err == nil {
			return nil
		}
		select {
		case <-exited:
			n.cmd = nil
			return fmt.Errorf("nats-server exited at start:\n%s", tail(n.logPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("nats-server on %s: JetStream did not answer: %w\n%s", n.URL(), ctx.Err(), tail(n.logPath, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kill SIGKILLs the server, the broker fault, and waits until it is gone.
func (n *natsServer) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

func jetStreamAnswers(ctx context.Context, url string) error {
	nc, err := natsgo.Connect(url, natsgo.Timeout(time.Second), natsgo.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}
