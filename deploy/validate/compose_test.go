package validate

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// loadCompose loads docker-compose.yml the way `docker compose` does
// (compose-go rejects unknown keys and bad references), without the
// caller's environment or .env so the result is the same everywhere.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{repoFile("docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot),
		cli.WithEnv(nil),
		cli.WithDiscardEnvFile,
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return project
}

// heraldServices are the services built from the repository's Dockerfile.
func heraldServices(t *testing.T, p *types.Project) map[string]types.ServiceConfig {
	t.Helper()
	out := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		if s.Build != nil || strings.HasPrefix(s.Image, "herald") {
			out[name] = s
		}
	}
	if len(out) == 0 {
		t.Fatal("docker-compose.yml: no service builds Herald")
	}
	return out
}

// subcommand is a herald command line's first word.
func subcommand(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func TestComposeRunsHeraldFromTheDockerfile(t *testing.T) {
	p := loadCompose(t)
	dockerfile := parseDockerfile(t)
	final := dockerfile.final()
	herald := heraldServices(t, p)

	var migrate, serve string
	for _, name := range sortedKeys(herald) {
		s := herald[name]
		if s.Build == nil {
			t.Errorf("service %s runs image %q without building it from the repository's Dockerfile", name, s.Image)
			continue
		}
		if s.Build.Context != repoRoot || filepath.Join(s.Build.Context, s.Build.Dockerfile) != repoFile("Dockerfile") {
			t.Errorf("service %s builds %s with context %s; want ./Dockerfile in the repository root", name, s.Build.Dockerfile, s.Build.Context)
		}
		if len(s.Entrypoint) != 0 {
			t.Errorf("service %s replaces the image's entrypoint %v with %v", name, final.entrypoint, s.Entrypoint)
		}
		args := []string(s.Command)
		if len(args) == 0 {
			args = final.cmd
		}
		checkHeraldCommand(t, "service "+name, args)
		switch subcommand(args) {
		case "serve":
			serve = name
			checkDocumented(t, "service "+name, args)
		case "migrate":
			migrate = name
			checkDocumented(t, "service "+name, args)
		}
		if hc := s.HealthCheck; hc != nil && !hc.Disable && len(hc.Test) > 1 && hc.Test[0] == "CMD" && hc.Test[1] == final.entrypoint[0] {
			checkHeraldCommand(t, "service "+name+" healthcheck", hc.Test[2:])
		}
		checkComposeConfig(t, p, name, s, args)
	}
	if serve == "" || migrate == "" {
		t.Fatalf("docker-compose.yml needs a herald migrate service and a herald serve service (found migrate=%q serve=%q)", migrate, serve)
	}

	// migrate runs to completion before serve starts, and after the database is up.
	if dep, ok := p.Services[serve].DependsOn[migrate]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("service %s must depend on %s with condition service_completed_successfully (got %+v)", serve, migrate, p.Services[serve].DependsOn)
	}
	if p.Services[migrate].Restart != "" && p.Services[migrate].Restart != types.RestartPolicyNo {
		t.Errorf("one-shot service %s restarts (%q); a failed migration should stop the start-up instead", migrate, p.Services[migrate].Restart)
	}
	if hc := p.Services[serve].HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
		t.Errorf("service %s (the relay) has no healthcheck", serve)
	}
}

// checkComposeConfig: the config a Herald service mounts is one Herald
// accepts with the service's environment, and names the compose services it
// talks to.
func checkComposeConfig(t *testing.T, p *types.Project, name string, s types.ServiceConfig, args []string) {
	t.Helper()
	cfgPath := ""
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			cfgPath = args[i+1]
		}
	}
	if cfgPath == "" {
		return
	}
	source := ""
	for _, v := range s.Volumes {
		if v.Target == cfgPath || v.Target == filepath.Dir(cfgPath) && v.Type == types.VolumeTypeBind {
			source = v.Source
			if v.Target == filepath.Dir(cfgPath) {
				source = filepath.Join(source, filepath.Base(cfgPath))
			}
		}
	}
	if source == "" {
		t.Errorf("service %s reads %s, which no volume mounts (the image's default config would run an embedded setup)", name, cfgPath)
		return
	}
	doc, err := os.ReadFile(source)
	if err != nil {
		t.Errorf("service %s mounts %s: %v", name, source, err)
		return
	}
	where := "service " + name + " " + strings.TrimPrefix(source, repoRoot+"/")
	cfg := checkHeraldYAML(t, where, doc)
	var env []string
	for k, v := range s.Environment {
		if strings.HasPrefix(k, "HERALD_") && v != nil {
			env = append(env, k+"="+*v)
		}
	}
	slices.Sort(env)
	if out, refused := heraldRefuses(t, string(doc), env); refused {
		t.Errorf("%s: herald refuses it with the service's environment %q:\n%s", where, env, out)
	}

	// The hosts it connects to are services it depends on.
	dsn := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "HERALD_DATABASE_DSN="); ok {
			dsn = v
		}
	}
	if db, _ := cfg["database"].(map[string]any); dsn == "" && db != nil {
		dsn, _ = db["dsn"].(string)
	}
	var hosts []string
	if u, err := url.Parse(dsn); err == nil && u.Hostname() != "" {
		hosts = append(hosts, u.Hostname())
	}
	if subcommand(args) == "serve" {
		if n, _ := cfg["nats"].(map[string]any); n != nil {
			for _, raw := range strings.Split(n["url"].(string), ",") {
				if u, err := url.Parse(strings.TrimSpace(raw)); err == nil {
					hosts = append(hosts, u.Hostname())
				}
			}
		}
	}
	for _, h := range hosts {
		if _, ok := p.Services[h]; !ok {
			t.Errorf("%s: connects to %q, which is not a compose service", where, h)
			continue
		}
		if _, ok := s.DependsOn[h]; !ok && !dependsTransitively(p, name, h) {
			t.Errorf("service %s connects to %s without depending on it", name, h)
		}
	}
}

func dependsTransitively(p *types.Project, from, to string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(s string) bool {
		if seen[s] {
			return false
		}
		seen[s] = true
		for dep := range p.Services[s].DependsOn {
			if dep == to || walk(dep) {
				return true
			}
		}
		return false
	}
	return walk(from)
}

func TestComposeHealthchecksAndStartOrder(t *testing.T) {
	p := loadCompose(t)
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
				continue
			}
			if d.Condition == types.ServiceConditionHealthy && (target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) == 0) {
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		if s.Build == nil {
			image := s.Image
			if !strings.Contains(image, ":") || strings.HasSuffix(image, ":latest") {
				t.Errorf("service %s: image %q is not pinned to a tag", name, image)
			}
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s mounts %s, which does not exist: %v", name, v.Source, err)
			}
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "HERALD_") && s.Build == nil {
				t.Errorf("service %s sets %s but is not Herald", name, k)
			}
		}
	}
	// The infrastructure Herald waits for reports its health.
	for _, name := range []string{"postgres", "nats"} {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("docker-compose.yml has no %s service", name)
			continue
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
}

// TestComposeConsumerReadsTheStream: the sample consumer subscribes to the
// subjects Herald publishes on.
func TestComposeConsumerReadsTheStream(t *testing.T) {
	p := loadCompose(t)
	var cfg struct {
		NATS struct {
			StreamSubjects []string `json:"stream_subjects"`
		} `json:"nats"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy", "compose", "herald.yaml"), &cfg); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range p.Services {
		if !strings.HasPrefix(s.Image, "natsio/nats-box") {
			continue
		}
		cmd := []string(s.Command)
		found = true
		if !slices.Contains(cmd, "subscribe") && !slices.Contains(cmd, "sub") {
			t.Errorf("consumer %v does not subscribe", cmd)
		}
		for _, subj := range cfg.NATS.StreamSubjects {
			if !slices.Contains(cmd, subj) {
				t.Errorf("consumer %v does not read %s, the stream's subjects", cmd, subj)
			}
		}
	}
	if !found {
		t.Error("docker-compose.yml has no nats-box consumer")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
