package validate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// repoRoot is the Herald repository this module sits in.
var repoRoot = func() string {
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return dir
}()

func repoFile(parts ...string) string {
	return filepath.Join(append([]string{repoRoot}, parts...)...)
}

func readRepoFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requireServices is CI's switch: a missing tool fails instead of skipping.
func requireServices() bool { return os.Getenv("HERALD_REQUIRE_SERVICES") == "1" }

// missing skips the test, or fails it when HERALD_REQUIRE_SERVICES=1.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if requireServices() {
		t.Fatal(msg + " (HERALD_REQUIRE_SERVICES=1)")
	}
	t.Skip(msg)
}

// The herald binary, built once per test run the way the Dockerfile builds
// it (static, trimmed), so commands and rendered configs are checked against
// the real CLI and config loader rather than a copy of their rules.
var (
	heraldOnce sync.Once
	heraldPath string
	heraldErr  error
)

func heraldBinary(t *testing.T) string {
	t.Helper()
	heraldOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-validate-")
		if err != nil {
			heraldErr = err
			return
		}
		heraldPath = filepath.Join(dir, "herald")
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", heraldPath, "./cmd/herald")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			heraldErr = fmt.Errorf("go build ./cmd/herald with CGO_ENABLED=0: %w\n%s", err, out)
		}
	})
	if heraldErr != nil {
		t.Fatal(heraldErr)
	}
	return heraldPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if heraldPath != "" {
		_ = os.RemoveAll(filepath.Dir(heraldPath))
	}
	os.Exit(code)
}

// runHerald runs the binary with exactly env (plus PATH and HOME) and
// returns its combined output.
func runHerald(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(heraldBinary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// checkHeraldCommand fails unless args (as a container would pass them to
// /herald) name an existing subcommand and flags the CLI accepts. `--help`
// makes cobra parse the flags without running anything; the usage line
// proves the whole subcommand path was found rather than a parent's help.
func checkHeraldCommand(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no herald subcommand", where)
		return
	}
	out, err := runHerald(t, nil, append(slices.Clone(args), "--help")...)
	if err != nil {
		t.Errorf("%s: herald %s is not a valid command line: %v\n%s", where, strings.Join(args, " "), err, out)
		return
	}
	var path []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		path = append(path, a)
	}
	want := "herald " + strings.Join(path, " ")
	usage := regexp.MustCompile(`(?m)^Usage:\s*\n\s+(.+)$`).FindStringSubmatch(out)
	if usage == nil || !strings.HasPrefix(usage[1]+" ", want+" ") {
		t.Errorf("%s: herald %s: %q is not a subcommand (help shows %q)", where, strings.Join(args, " "), want, usage)
	}
}

// configKey is one setting of config/herald.example.yaml and the YAML type of
// its default: "string", "int", "bool" or "list".
type configKeys map[string]string

// pendingConfig are the keys of adapters being written, as the chart uses
// them. Each block is used only while config/herald.example.yaml has no block
// of that name; once it has, the example's keys rule and the chart must
// follow them (TestSchemaFollowsConfigKeys).
var pendingConfig = map[string]configKeys{
	"sqs": {
		"sqs.queue_url": "string", "sqs.region": "string", "sqs.endpoint": "string",
		"sqs.message_group_id": "string", "sqs.max_message_size": "int",
	},
	"servicebus": {
		"servicebus.connection_string": "string", "servicebus.namespace": "string",
		"servicebus.queue": "string", "servicebus.topic": "string", "servicebus.binding": "string",
		"servicebus.sessions": "bool", "servicebus.partitioned": "bool",
	},
}

// exampleConfig reads config/herald.example.yaml, which lists every key with
// its default (a main-module test keeps it equal to config.Default).
func exampleConfig(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(readRepoFile(t, "config", "herald.example.yaml"), &doc); err != nil {
		t.Fatalf("config/herald.example.yaml: %v", err)
	}
	return doc
}

// knownConfigKeys is every dotted key Herald accepts, plus the pending
// adapters' keys while the example does not define them yet.
func knownConfigKeys(t *testing.T) (keys configKeys, pending []string) {
	t.Helper()
	doc := exampleConfig(t)
	keys = configKeys{}
	flatten("", doc, keys)
	for block, extra := range pendingConfig {
		if _, ok := doc[block]; ok {
			continue
		}
		pending = append(pending, block)
		for k, v := range extra {
			keys[k] = v
		}
	}
	sort.Strings(pending)
	return keys, pending
}

// flatten records every leaf of a YAML document under its dotted key.
func flatten(prefix string, v any, into configKeys) {
	if m, ok := v.(map[string]any); ok {
		for k, child := range m {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, child, into)
		}
		return
	}
	into[prefix] = yamlType(v)
}

func yamlType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "bool"
	case float64, int, int64:
		return "int"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// envName is config.EnvName: relay.batch_size → HERALD_RELAY_BATCH_SIZE.
func envName(key string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// checkHeraldYAML fails unless doc (a herald.yaml) holds only known keys,
// each with its default's type.
func checkHeraldYAML(t *testing.T, where string, doc []byte) map[string]any {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(doc, &cfg); err != nil {
		t.Errorf("%s: herald.yaml does not parse: %v\n%s", where, err, doc)
		return nil
	}
	known, _ := knownConfigKeys(t)
	got := configKeys{}
	flatten("", cfg, got)
	for key, typ := range got {
		want, ok := known[key]
		switch {
		case !ok:
			t.Errorf("%s: herald.yaml sets %q, which is not a key of config/herald.example.yaml", where, key)
		case typ == "null":
			t.Errorf("%s: herald.yaml leaves %q empty", where, key)
		case typ != want:
			t.Errorf("%s: herald.yaml sets %q to a %s, Herald expects a %s", where, key, typ, want)
		}
	}
	return cfg
}

// readmeCommands maps each subcommand in the README's command table to its
// documented synopsis, e.g. "serve" → "herald serve [--config FILE] [--migrate]".
func readmeCommands(t *testing.T) map[string]string {
	t.Helper()
	cmds := map[string]string{}
	re := regexp.MustCompile("(?m)^\\|\\s*`(herald ([a-z]+)[^`]*)`\\s*\\|")
	for _, m := range re.FindAllStringSubmatch(string(readRepoFile(t, "README.md")), -1) {
		if _, seen := cmds[m[2]]; !seen {
			cmds[m[2]] = m[1]
		}
	}
	if len(cmds) == 0 {
		t.Fatal("README.md: found no command table rows like | `herald serve …` |")
	}
	return cmds
}

// checkDocumented fails unless args use a subcommand and flags that the
// README's command table documents.
func checkDocumented(t *testing.T, where string, args []string) {
	t.Helper()
	synopsis, ok := readmeCommands(t)[args[0]]
	if !ok {
		t.Errorf("%s: herald %s is not in README.md's command table", where, args[0])
		return
	}
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "--") && !strings.Contains(synopsis, a) {
			t.Errorf("%s: flag %s of herald %s is not documented in README.md (%s)", where, a, args[0], synopsis)
		}
	}
}

// lookTool finds a tool on PATH or in $(go env GOPATH)/bin.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", err
	}
	for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
		p := filepath.Join(dir, "bin", name)
		if runtime.GOOS == "windows" {
			p += ".exe"
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New(name + " is neither on PATH nor in $(go env GOPATH)/bin")
}
