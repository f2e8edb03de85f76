//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var (
	suite settings
	// herald is the binary built from this tree for the run.
	herald string
)

// TestMain builds the herald binary once, from the working tree as it is
// now, so that every scenario runs what an operator would deploy.
func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if runtime.GOOS != "linux" {
		fmt.Println("chaos: skipped, the suite signals processes and reads /proc: Linux only")
		return 0
	}
	var err error
	if suite, err = loadSettings(os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	if err := suite.checkTools(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	reapLeftoverClusters()
	bin, err := os.MkdirTemp("", "herald-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	defer func() { _ = os.RemoveAll(bin) }()
	herald = filepath.Join(bin, "herald")
	if err := buildHerald(herald); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	return m.Run()
}

// buildHerald compiles ./cmd/herald of the module this package is in.
func buildHerald(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("find the module: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "build", "-o", out, "./cmd/herald")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/herald in %s: %w\n%s", root, err, b)
	}
	return nil
}
