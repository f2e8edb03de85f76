package validate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper-case: FROM, RUN, COPY, …
	args string
	line int
}

type stage struct {
	base, name   string
	instructions []instruction
	entrypoint   []string // exec form
	cmd          []string // exec form
	user         string
}

type dockerfile struct {
	args   map[string]string // global ARGs before the first FROM, with defaults
	stages []*stage
}

func (d *dockerfile) final() *stage { return d.stages[len(d.stages)-1] }

// parseDockerfile reads the repository's Dockerfile: comments and
// continuation lines as BuildKit reads them, instructions per stage.
func parseDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	d := &dockerfile{args: map[string]string{}}
	var cur *stage
	var pending strings.Builder
	start := 0
	lines := strings.Split(string(readRepoFile(t, "Dockerfile")), "\n")
	for i, raw := range lines {
		line := strings.TrimSpace(raw)
		if pending.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if pending.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comments inside a continued instruction
		}
		if pending.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		text := pending.String()
		pending.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		switch in.cmd {
		case "FROM":
			fields := strings.Fields(in.args)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				fields = fields[1:]
			}
			cur = &stage{base: expandArgs(fields[0], d.args)}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				cur.name = fields[2]
			}
			d.stages = append(d.stages, cur)
			continue
		case "ARG":
			if cur == nil {
				name, def, _ := strings.Cut(in.args, "=")
				d.args[name] = def
				continue
			}
		}
		if cur == nil {
			t.Fatalf("Dockerfile:%d: %s before FROM", in.line, in.cmd)
		}
		cur.instructions = append(cur.instructions, in)
		switch in.cmd {
		case "ENTRYPOINT":
			cur.entrypoint = execForm(t, in)
		case "CMD":
			cur.cmd = execForm(t, in)
		case "USER":
			cur.user = in.args
		}
	}
	if len(d.stages) == 0 {
		t.Fatal("Dockerfile: no FROM")
	}
	return d
}

func expandArgs(s string, args map[string]string) string {
	return regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`).ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		if v, ok := args[name]; ok {
			return v
		}
		return m
	})
}

// execForm parses ["a", "b"]; the shell form needs a shell, which distroless lacks.
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Errorf("Dockerfile:%d: %s %s is not in exec form [\"…\"]: the image has no shell", in.line, in.cmd, in.args)
	}
	return v
}

func TestDockerfileBuildsAStaticHeraldOnDistroless(t *testing.T) {
	d := parseDockerfile(t)
	final := d.final()

	// Final stage: distroless static, as nonroot, no RUN (there is no shell).
	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:(nonroot|[^:]*-nonroot)$`).MatchString(final.base) {
		t.Errorf("final stage is FROM %s; want gcr.io/distroless/static-debian12:nonroot", final.base)
	}
	if final.user == "" || final.user == "root" || final.user == "0" || strings.HasPrefix(final.user, "0:") || strings.HasPrefix(final.user, "root:") {
		t.Errorf("final stage runs as %q; want the nonroot user (65532)", final.user)
	}
	for _, in := range final.instructions {
		if in.cmd == "RUN" {
			t.Errorf("Dockerfile:%d: RUN in the final stage: distroless has no shell", in.line)
		}
	}

	// The entrypoint is the binary the build stage made from ./cmd/herald.
	if len(final.entrypoint) != 1 {
		t.Fatalf("ENTRYPOINT %q; want the herald binary alone", final.entrypoint)
	}
	var build *stage
	var binary string
	for _, in := range final.instructions {
		if in.cmd != "COPY" || !strings.Contains(in.args, "--from=") {
			continue
		}
		fields := strings.Fields(in.args)
		if fields[len(fields)-1] != final.entrypoint[0] {
			continue
		}
		from := strings.TrimPrefix(fields[slices.IndexFunc(fields, func(f string) bool { return strings.HasPrefix(f, "--from=") })], "--from=")
		binary = fields[len(fields)-2]
		for _, s := range d.stages {
			if s.name == from {
				build = s
			}
		}
	}
	if build == nil {
		t.Fatalf("no COPY --from=<stage> puts a binary at the ENTRYPOINT %s", final.entrypoint[0])
	}
	goBuild := ""
	for _, in := range build.instructions {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			goBuild = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "-o " + binary, "./cmd/herald"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("the build stage's go build lacks %q: %s", want, goBuild)
		}
	}
	if !strings.HasPrefix(build.base, "golang:") {
		t.Errorf("build stage is FROM %s; want golang:<version>", build.base)
	}
	// The Go in the builder is the one go.mod asks for.
	goMod := string(readRepoFile(t, "go.mod"))
	if m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod); m == nil || !strings.HasPrefix(strings.TrimPrefix(build.base, "golang:"), m[1]) {
		t.Errorf("builder %s does not match go.mod's go %v", build.base, m)
	}

	// The default command is the README's, on the config the image ships.
	if !slices.Equal(final.cmd, serveArgs) {
		t.Errorf("CMD %q; want %q", final.cmd, serveArgs)
	}
	checkDocumented(t, "Dockerfile CMD", final.cmd)
	checkHeraldCommand(t, "Dockerfile CMD", final.cmd)
	shipped := ""
	for _, in := range final.instructions {
		fields := strings.Fields(in.args)
		if in.cmd == "COPY" && len(fields) >= 2 && fields[len(fields)-1] == configPath {
			shipped = fields[len(fields)-2]
		}
	}
	if shipped == "" {
		t.Fatalf("the image ships no %s for its default CMD", configPath)
	}
	doc, err := os.ReadFile(repoFile(shipped))
	if err != nil {
		t.Fatalf("COPY %s: %v", shipped, err)
	}
	checkHeraldYAML(t, shipped, doc)
	if out, refused := heraldRefuses(t, string(doc), nil); refused {
		t.Errorf("%s: herald refuses the image's default config:\n%s", shipped, out)
	}
	if ignored(t, shipped) {
		t.Errorf(".dockerignore leaves %s out of the build context, but the Dockerfile copies it", shipped)
	}
}

// TestDockerignoreKeepsTheBuildInputs: the context holds what `go build
// ./cmd/herald` reads and not the bulky rest.
func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	var keep []string
	err := filepath.WalkDir(repoRoot, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		if e.IsDir() && (rel == ".git" || e.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !e.IsDir() && (strings.HasSuffix(rel, ".go") && !strings.HasPrefix(rel, "deploy/") || rel == "go.mod" || rel == "go.sum" ||
			strings.HasPrefix(rel, "pkg/outbox/migrations/") || strings.HasSuffix(rel, ".sql") && strings.HasPrefix(rel, "internal/")) {
			keep = append(keep, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keep = append(keep, "config/herald.example.yaml")
	for _, rel := range keep {
		if ignored(t, rel) {
			t.Errorf(".dockerignore leaves %s out of the build context", rel)
		}
	}
	for _, rel := range []string{".git/HEAD", ".ci/sqs/node_modules/fauxqs/package.json", "herald.db", "herald-data/jetstream/x"} {
		if !ignored(t, rel) {
			t.Errorf(".dockerignore sends %s to the builder", rel)
		}
	}
}

// ignored applies .dockerignore the way BuildKit does: the last matching
// pattern wins, "!" re-includes, a pattern matching a directory covers
// everything below it, and ** spans directories.
func ignored(t *testing.T, rel string) bool {
	t.Helper()
	type rule struct {
		re     *regexp.Regexp
		negate bool
	}
	var rules []rule
	for _, line := range strings.Split(string(readRepoFile(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		negate := strings.HasPrefix(line, "!")
		pattern := filepath.Clean(strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/"))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pattern); i++ {
			switch c := pattern[i]; {
			case strings.HasPrefix(pattern[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(pattern[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("(/.*)?$")
		rules = append(rules, rule{regexp.MustCompile(re.String()), negate})
	}
	out := false
	for _, r := range rules {
		if r.re.MatchString(filepath.ToSlash(rel)) {
			out = !r.negate
		}
	}
	return out
}
