package validate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "charts/herald"
	// kubeVersion is passed to `helm template`: a helm built by `go install`
	// assumes Kubernetes 1.20, below the chart's kubeVersion.
	kubeVersion = "1.31.0"
	// configPath is where the chart mounts herald.yaml; the README documents
	// `herald serve --config FILE`.
	configPath = "/etc/herald/herald.yaml"
)

var (
	serveArgs   = []string{"serve", "--config", configPath}
	migrateArgs = []string{"migrate", "--config", configPath}
)

// valuesFiles are the chart's ready-made values files, found on disk so a new
// one cannot be forgotten here.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(repoFile(chartDir, "values-*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s/values-*.yaml: %v", chartDir, err)
	}
	return files
}

// helmVersion is the helm these tests expect: schema error messages and
// rendering details differ between releases. .ci/deploy.sh installs it.
const helmVersion = "v3.22.0"

func helmBinary(t *testing.T) string {
	t.Helper()
	p, err := lookTool("helm")
	if err != nil {
		missing(t, "%v: run .ci/deploy.sh to install helm %s", err, helmVersion)
	}
	out, err := exec.Command(p, "version", "--template", "{{.Version}}").Output()
	if got := strings.TrimSpace(string(out)); err != nil || got != helmVersion {
		missing(t, "%s is helm %q (%v), want %s: run .ci/deploy.sh", p, got, err, helmVersion)
	}
	return p
}

// helm runs the helm binary in the repository root.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Dir = repoRoot
	// No user repositories, plugins or caches leak in.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// release is one `helm template` output, strictly decoded.
type release struct {
	name     string
	objects  []runtime.Object
	monitors []serviceMonitor
}

func (r *release) deployments() []*appsv1.Deployment { return objectsOf[*appsv1.Deployment](r) }
func (r *release) jobs() []*batchv1.Job              { return objectsOf[*batchv1.Job](r) }
func (r *release) configMaps() []*corev1.ConfigMap   { return objectsOf[*corev1.ConfigMap](r) }
func (r *release) services() []*corev1.Service       { return objectsOf[*corev1.Service](r) }

func objectsOf[T runtime.Object](r *release) []T {
	var out []T
	for _, o := range r.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func (r *release) configMap(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	for _, cm := range r.configMaps() {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("%s: no ConfigMap %q rendered", r.name, name)
	return nil
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) the chart renders. A CRD is not in client-go's
// scheme, so it is decoded strictly against these fields: a misspelt or
// misplaced field fails just as for the built-in kinds.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			MatchNames []string `json:"matchNames,omitempty"`
			Any        bool     `json:"any,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeManifests strictly decodes every YAML document of a rendered chart
// and reports each one that does not decode.
func decodeManifests(name, manifests string) (*release, []error) {
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	r := &release{name: name}
	var errs []error
	for _, doc := range docSeparator.Split(manifests, -1) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			errs = append(errs, fmt.Errorf("%s: a document is not YAML: %w\n%s", name, err, doc))
			continue
		}
		if meta.Kind == "" && strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		source := regexp.MustCompile(`# Source: (\S+)`).FindStringSubmatch(doc)
		where := fmt.Sprintf("%s: %s %v", name, meta.Kind, source)
		if meta.APIVersion == "monitoring.coreos.com/v1" && meta.Kind == "ServiceMonitor" {
			var sm serviceMonitor
			if err := yaml.UnmarshalStrict([]byte(doc), &sm); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			r.monitors = append(r.monitors, sm)
			continue
		}
		obj, _, err := decoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not a valid Kubernetes object: %w", where, err))
			continue
		}
		r.objects = append(r.objects, obj)
	}
	return r, errs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// render runs `helm template` and decodes the result, failing on any error.
func render(t *testing.T, name string, args ...string) *release {
	t.Helper()
	full := append([]string{"template", "herald", chartDir, "--namespace", "herald", "--kube-version", kubeVersion}, args...)
	out, errOut, err := helm(t, full...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(full, " "), err, errOut)
	}
	r, errs := decodeManifests(name, out)
	for _, err := range errs {
		t.Error(err)
	}
	return r
}

type renderCase struct {
	name string
	args []string
	// check adds what only this case shows.
	check func(t *testing.T, r *release)
}

func renderCases(t *testing.T) []renderCase {
	cases := []renderCase{{name: "values.yaml"}}
	for _, f := range valuesFiles(t) {
		base := filepath.Base(f)
		c := renderCase{name: base, args: []string{"-f", filepath.Join(chartDir, base)}}
		switch base {
		case "values-aws-sqs.yaml":
			c.check = func(t *testing.T, r *release) {
				sa := only(t, r.name, objectsOf[*corev1.ServiceAccount](r))
				if !strings.HasPrefix(sa.Annotations["eks.amazonaws.com/role-arn"], "arn:aws:iam::") {
					t.Errorf("%s: ServiceAccount lacks the IRSA annotation: %v", r.name, sa.Annotations)
				}
			}
		case "values-azure-servicebus.yaml":
			c.check = func(t *testing.T, r *release) {
				sa := only(t, r.name, objectsOf[*corev1.ServiceAccount](r))
				if sa.Annotations["azure.workload.identity/client-id"] == "" {
					t.Errorf("%s: ServiceAccount lacks azure.workload.identity/client-id: %v", r.name, sa.Annotations)
				}
				d := only(t, r.name, r.deployments())
				if d.Spec.Template.Labels["azure.workload.identity/use"] != "true" {
					t.Errorf("%s: pods lack the label azure.workload.identity/use: \"true\": %v", r.name, d.Spec.Template.Labels)
				}
			}
		}
		cases = append(cases, c)
	}
	return append(cases,
		renderCase{
			name: "onprem with ServiceMonitor",
			args: []string{"-f", chartDir + "/values-onprem-jetstream.yaml", "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prometheus"},
			check: func(t *testing.T, r *release) {
				sm := only(t, r.name, r.monitors)
				svc := only(t, r.name, r.services())
				if !selects(sm.Spec.Selector.MatchLabels, svc.Labels) {
					t.Errorf("%s: ServiceMonitor selector %v does not select the Service (labels %v)", r.name, sm.Spec.Selector.MatchLabels, svc.Labels)
				}
				if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
					t.Errorf("%s: ServiceMonitor endpoints %+v do not scrape /metrics on Service port %q", r.name, sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
				}
				if sm.Labels["release"] != "prometheus" {
					t.Errorf("%s: serviceMonitor.labels not applied: %v", r.name, sm.Labels)
				}
			},
		},
		renderCase{
			name: "sqlite, one relay",
			args: []string{"--set", "database.driver=sqlite", "--set", "replicaCount=1", "--set", "database.dsn_secret.name="},
			check: func(t *testing.T, r *release) {
				if n := len(objectsOf[*corev1.PersistentVolumeClaim](r)); n != 1 {
					t.Errorf("%s: %d PersistentVolumeClaims, want 1 for the SQLite file", r.name, n)
				}
			},
		},
		renderCase{
			name: "health disabled",
			args: []string{"--set", "health.enabled=false"},
			check: func(t *testing.T, r *release) {
				if n := len(r.services()); n != 0 {
					t.Errorf("%s: %d Services without an operations port", r.name, n)
				}
			},
		},
		renderCase{
			name: "mysql, extra env, servicebus connection string",
			args: []string{
				"-f", chartDir + "/values-azure-servicebus.yaml",
				"--set", "database.driver=mysql",
				"--set", "servicebus.namespace=",
				"--set", "servicebus.connection_string_secret.name=herald-servicebus",
				"--set-json", `extraEnv=[{"name":"HERALD_RELAY_BATCH_SIZE","value":"500"}]`,
			},
			check: func(t *testing.T, r *release) {
				env := containerEnv(only(t, r.name, r.deployments()).Spec.Template.Spec.Containers[0])
				if env["HERALD_SERVICEBUS_CONNECTION_STRING"].ValueFrom == nil || env["HERALD_RELAY_BATCH_SIZE"].Value != "500" {
					t.Errorf("%s: env %v lacks the connection string Secret or extraEnv", r.name, slices.Sorted(maps.Keys(env)))
				}
			},
		},
		renderCase{
			name: "admin API token from a Secret, stored webhook endpoints",
			args: []string{
				"--set", "health.adminTokenSecret.name=herald-admin",
				"--set-json", `subscriptions={"refresh_interval":"10s","retry_schedule":["5s","1m"],"allow_cidrs":["10.20.0.0/16"],` +
					`"secrets_key_secret":{"name":"herald-subscriptions"},"previous_secrets_keys_secret":{"name":"herald-subscriptions","key":"old"}}`,
			},
			check: func(t *testing.T, r *release) {
				d := only(t, r.name, r.deployments())
				relay := container(t, r.name, d.Spec.Template.Spec.Containers, "herald")
				env := containerEnv(relay)
				if ref := env["HERALD_HTTP_ADMIN_TOKEN"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "herald-admin" {
					t.Errorf("%s: HERALD_HTTP_ADMIN_TOKEN does not come from Secret herald-admin: %+v", r.name, ref)
				}
				for name, key := range map[string]string{"HERALD_SUBSCRIPTIONS_SECRETS_KEY": "secrets_key", "HERALD_SUBSCRIPTIONS_PREVIOUS_SECRETS_KEYS": "old"} {
					if ref := env[name].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "herald-subscriptions" || ref.SecretKeyRef.Key != key {
						t.Errorf("%s: %s does not come from Secret herald-subscriptions, key %s: %+v", r.name, name, key, ref)
					}
				}
				if cm := r.configMap(t, configMapOf(t, r.name, d.Spec.Template.Spec, relay)).Data["herald.yaml"]; strings.Contains(cm, "secrets_key") {
					t.Errorf("%s: herald.yaml names the secrets keys:\n%s", r.name, cm)
				}
			},
		},
		renderCase{
			name: "webhook secrets from a Secret, destinations",
			args: []string{
				"--set", "adapter=webhook",
				"--set", "webhook.url=https://hooks.example.com/herald",
				"--set", "webhook.secrets_secret.name=herald-webhook",
				"--set-json", `destinations=[{"name":"partner","types":["io.herald.portal.input_port.*"],"adapter":"webhook","webhook":{"url":"https://partner.example.com/herald","secrets_file":"/etc/herald-partner/secrets","timeout":"5s"}},{"name":"archive","adapter":"nats","nats":{"url":"nats://nats:4222","stream":"ARCHIVE"}}]`,
				"--set-json", `extraVolumes=[{"name":"partner","secret":{"secretName":"herald-partner"}}]`,
				"--set-json", `extraVolumeMounts=[{"name":"partner","mountPath":"/etc/herald-partner","readOnly":true}]`,
			},
			check: func(t *testing.T, r *release) {
				d := only(t, r.name, r.deployments())
				relay := container(t, r.name, d.Spec.Template.Spec.Containers, "herald")
				if ref := containerEnv(relay)["HERALD_WEBHOOK_SECRETS"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "herald-webhook" || ref.SecretKeyRef.Key != "secrets" {
					t.Errorf("%s: HERALD_WEBHOOK_SECRETS does not come from Secret herald-webhook, key secrets: %+v", r.name, ref)
				}
				var cfg struct {
					Destinations []struct {
						Name string `json:"name"`
					} `json:"destinations"`
				}
				if err := yaml.Unmarshal([]byte(r.configMap(t, configMapOf(t, r.name, d.Spec.Template.Spec, relay)).Data["herald.yaml"]), &cfg); err != nil {
					t.Fatal(err)
				}
				if len(cfg.Destinations) != 2 || cfg.Destinations[0].Name != "partner" || cfg.Destinations[1].Name != "archive" {
					t.Errorf("%s: herald.yaml destinations %+v, want partner and archive", r.name, cfg.Destinations)
				}
			},
		},
	)
}

func TestChartRendersValidObjects(t *testing.T) {
	helmBinary(t)
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r := render(t, c.name, c.args...)
			checkRelease(t, r)
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

// checkRelease holds what every rendering must show.
func checkRelease(t *testing.T, r *release) {
	t.Helper()
	d := only(t, r.name, r.deployments())
	pod := d.Spec.Template.Spec
	relay := container(t, r.name, pod.Containers, "herald")

	// The relay runs the README's command through the image's entrypoint.
	if len(relay.Command) != 0 {
		t.Errorf("%s: relay container overrides the image entrypoint with %v", r.name, relay.Command)
	}
	if !slices.Equal(relay.Args, serveArgs) {
		t.Errorf("%s: relay args %q, want %q", r.name, relay.Args, serveArgs)
	}
	checkDocumented(t, r.name+" relay", relay.Args)
	checkHeraldCommand(t, r.name+" relay", relay.Args)

	// The config the relay reads.
	cmName := configMapOf(t, r.name, pod, relay)
	cfgYAML := r.configMap(t, cmName).Data["herald.yaml"]
	cfg := checkHeraldYAML(t, r.name+" ConfigMap "+cmName, []byte(cfgYAML))
	if cfg == nil {
		return
	}
	db, _ := cfg["database"].(map[string]any)
	driver, _ := db["driver"].(string)
	if d.Spec.Template.Annotations["checksum/config"] == "" {
		t.Errorf("%s: pod template lacks checksum/config, so a config change would not roll the relays", r.name)
	}
	checkOnlySelectedAdapter(t, r.name, cfg)
	checkNoInlineSecrets(t, r.name, cfgYAML, relay)
	checkEnvNames(t, r.name, relay)
	checkConfigAccepted(t, r.name, cfgYAML, relay, driver)

	// Migration: a hook Job on PostgreSQL/MySQL, an init container on SQLite.
	jobs := r.jobs()
	if driver == "sqlite" {
		if len(jobs) != 0 {
			t.Errorf("%s: SQLite renders %d Jobs; its migration belongs in an init container on the relay's volume", r.name, len(jobs))
		}
		mig := container(t, r.name, pod.InitContainers, "migrate")
		checkMigrate(t, r.name+" init container", mig, relay)
		if configMapOf(t, r.name, pod, mig) != cmName {
			t.Errorf("%s: init container reads another config than the relay", r.name)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("%s: SQLite needs exactly one relay, replaced with Recreate (replicas %v, strategy %q)", r.name, d.Spec.Replicas, d.Spec.Strategy.Type)
		}
	} else {
		job := only(t, r.name, jobs)
		checkHook(t, r.name, "Job "+job.Name, job.Annotations)
		mig := container(t, r.name, job.Spec.Template.Spec.Containers, "migrate")
		checkMigrate(t, r.name+" Job", mig, relay)
		jobCM := r.configMap(t, configMapOf(t, r.name, job.Spec.Template.Spec, mig))
		checkHook(t, r.name, "ConfigMap "+jobCM.Name, jobCM.Annotations)
		if w, jw := hookWeight(jobCM.Annotations), hookWeight(job.Annotations); w >= jw {
			t.Errorf("%s: the Job's ConfigMap (hook weight %d) must be created before the Job (%d)", r.name, w, jw)
		}
		if jobCM.Data["herald.yaml"] != cfgYAML {
			t.Errorf("%s: the migration's herald.yaml differs from the relay's:\n%s\n---\n%s", r.name, jobCM.Data["herald.yaml"], cfgYAML)
		}
		if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("%s: migration Job restartPolicy %q", r.name, job.Spec.Template.Spec.RestartPolicy)
		}
		checkPodSecurity(t, r.name+" Job", job.Spec.Template.Spec)
	}

	checkPodSecurity(t, r.name+" Deployment", pod)
	checkProbes(t, r, cfg, relay)

	// Everything that selects relays selects exactly the pod template's labels.
	podLabels := d.Spec.Template.Labels
	if !selects(d.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s: Deployment selector %v does not match its pods %v", r.name, d.Spec.Selector.MatchLabels, podLabels)
	}
	for _, pdb := range objectsOf[*policyv1.PodDisruptionBudget](r) {
		if !selects(pdb.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("%s: PodDisruptionBudget selector %v misses the relays %v", r.name, pdb.Spec.Selector.MatchLabels, podLabels)
		}
	}
	for _, svc := range r.services() {
		if !selects(svc.Spec.Selector, podLabels) {
			t.Errorf("%s: Service selector %v misses the relays %v", r.name, svc.Spec.Selector, podLabels)
		}
	}
	if sa := pod.ServiceAccountName; sa != "" {
		found := false
		for _, o := range objectsOf[*corev1.ServiceAccount](r) {
			found = found || o.Name == sa
		}
		if !found {
			t.Errorf("%s: relays use ServiceAccount %q, which the chart does not render", r.name, sa)
		}
	}
}

func checkMigrate(t *testing.T, where string, mig, relay corev1.Container) {
	t.Helper()
	if len(mig.Command) != 0 || !slices.Equal(mig.Args, migrateArgs) {
		t.Errorf("%s: migration runs %q %q, want args %q", where, mig.Command, mig.Args, migrateArgs)
	}
	checkDocumented(t, where, mig.Args)
	checkHeraldCommand(t, where, mig.Args)
	if mig.Image != relay.Image {
		t.Errorf("%s: migration image %q differs from the relay's %q", where, mig.Image, relay.Image)
	}
	if !equalJSON(mig.Env, relay.Env) || !equalJSON(mig.EnvFrom, relay.EnvFrom) {
		t.Errorf("%s: migration environment differs from the relay's, so it could read another config", where)
	}
	checkContainerSecurity(t, where, mig)
}

func checkHook(t *testing.T, name, what string, ann map[string]string) {
	t.Helper()
	hooks := strings.Split(ann["helm.sh/hook"], ",")
	if !slices.Contains(hooks, "pre-install") || !slices.Contains(hooks, "pre-upgrade") {
		t.Errorf("%s: %s is not a pre-install,pre-upgrade hook (annotations %v)", name, what, ann)
	}
	if !strings.Contains(ann["helm.sh/hook-delete-policy"], "before-hook-creation") {
		t.Errorf("%s: %s lacks hook-delete-policy before-hook-creation, so an upgrade would collide with the last one", name, what)
	}
}

func hookWeight(ann map[string]string) int {
	w, _ := strconv.Atoi(ann["helm.sh/hook-weight"])
	return w
}

// checkOnlySelectedAdapter: the config carries the chosen adapter's block and
// no other adapter's.
func checkOnlySelectedAdapter(t *testing.T, name string, cfg map[string]any) {
	t.Helper()
	adapter, _ := cfg["adapter"].(string)
	for _, block := range []string{"nats", "sqs", "servicebus", "webhook"} {
		_, has := cfg[block]
		if has != (block == adapter) {
			t.Errorf("%s: adapter %q, yet herald.yaml has block %q: %v", name, adapter, block, has)
		}
	}
}

var inlinePassword = regexp.MustCompile(`[a-zA-Z0-9._-]+:[^@/\s]+@`)

// checkNoInlineSecrets: credentials arrive from Secrets, never in the
// ConfigMap or as literal env values.
func checkNoInlineSecrets(t *testing.T, name, cfgYAML string, c corev1.Container) {
	t.Helper()
	if inlinePassword.MatchString(cfgYAML) {
		t.Errorf("%s: herald.yaml carries a user:password@ credential:\n%s", name, cfgYAML)
	}
	for _, e := range c.Env {
		secretish := e.Name == "HERALD_DATABASE_DSN" || strings.Contains(e.Name, "CONNECTION_STRING") || strings.Contains(e.Name, "PASSWORD") || strings.HasSuffix(e.Name, "_SECRETS")
		if secretish && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s: %s must come from a Secret (valueFrom.secretKeyRef)", name, e.Name)
		}
	}
}

// checkEnvNames: Herald refuses a HERALD_* variable that names no setting.
func checkEnvNames(t *testing.T, name string, c corev1.Container) {
	t.Helper()
	known, _ := knownConfigKeys(t)
	names := map[string]bool{}
	for k := range known {
		names[envName(k)] = true
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "HERALD_") && !names[e.Name] {
			t.Errorf("%s: env %s names no Herald setting; Herald would refuse to start", name, e.Name)
		}
	}
}

// checkConfigAccepted fails unless the real binary accepts the rendered
// herald.yaml with the container's HERALD_* environment (see heraldRefuses).
// Configs for adapters still being written may fail, on their own keys only.
func checkConfigAccepted(t *testing.T, name, cfgYAML string, c corev1.Container, driver string) {
	t.Helper()
	out, refused := heraldRefuses(t, cfgYAML, podEnv(c, driver))
	if !refused {
		return
	}
	_, pending := knownConfigKeys(t)
	if onlyPending(out, pending) {
		t.Logf("%s: herald refuses only the keys of adapters still being written (%s), as expected for now:\n%s", name, strings.Join(pending, ", "), out)
		return
	}
	t.Errorf("%s: herald refuses the rendered config:\n%s\n--- herald.yaml\n%s", name, out, cfgYAML)
}

// podEnv is c's HERALD_* environment, Secrets replaced by sample values.
func podEnv(c corev1.Container, driver string) []string {
	var env []string
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, "HERALD_") {
			continue
		}
		v := e.Value
		if e.ValueFrom != nil {
			v = sampleSecret(e.Name, driver)
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// heraldRefuses runs `herald migrate --print --config herald.yaml` with env:
// it loads and validates the config like `serve`, and touches no database.
// It returns herald's complaint, if any.
func heraldRefuses(t *testing.T, cfgYAML string, env []string) (string, bool) {
	t.Helper()
	// Not under t.TempDir(): its name carries the test's, which would put
	// words like "sqs" into every error message.
	dir, err := os.MkdirTemp("", "cfg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	file := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(file, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runHerald(t, env, "migrate", "--print", "--config", file)
	if err == nil {
		return "", false
	}
	return strings.ReplaceAll(out, file, "herald.yaml"), true
}

// onlyPending reports whether every problem herald names is a key, variable
// or adapter value of the pending adapters.
func onlyPending(out string, pending []string) bool {
	if len(pending) == 0 {
		return false
	}
	blocks := strings.Join(pending, "|")
	re := regexp.MustCompile(`unknown key "(` + blocks + `)\.[a-z_.]+"|env HERALD_(` + strings.ToUpper(blocks) + `)_[A-Z_]+: unknown setting|adapter: "(` + blocks + `)" is not implemented`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !re.MatchString(line) {
			return false
		}
	}
	return true
}

func sampleSecret(env, driver string) string {
	if env == "HERALD_WEBHOOK_SECRETS" {
		// Two whsec_ secrets of 32 bytes, comma-separated: a rotation.
		return "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) +
			",whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	}
	switch env {
	case "HERALD_SUBSCRIPTIONS_SECRETS_KEY":
		return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))
	case "HERALD_SUBSCRIPTIONS_PREVIOUS_SECRETS_KEYS":
		// Two keys of 32 bytes, comma-separated: more than one rotation behind.
		return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{4}, 32)) + "," +
			base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32))
	}
	if env != "HERALD_DATABASE_DSN" {
		return "sample-secret-0123456789" // long enough for http.admin_token
	}
	switch driver {
	case "postgres":
		return "postgres://herald:secret@db:5432/portal?sslmode=require"
	case "mysql":
		return "herald:secret@tcp(db:3306)/portal"
	}
	return "/data/herald.db"
}

// checkProbes: with http.listen in the config, the probes hit /healthz and
// /readyz on that port; without it there is nothing to probe.
func checkProbes(t *testing.T, r *release, cfg map[string]any, c corev1.Container) {
	t.Helper()
	listen := ""
	if h, ok := cfg["http"].(map[string]any); ok {
		listen, _ = h["listen"].(string)
	}
	if listen == "" {
		if c.LivenessProbe != nil || c.ReadinessProbe != nil {
			t.Errorf("%s: probes without http.listen in the config: nothing would answer them", r.name)
		}
		return
	}
	port, err := strconv.Atoi(listen[strings.LastIndex(listen, ":")+1:])
	if err != nil {
		t.Errorf("%s: http.listen %q has no port", r.name, listen)
		return
	}
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.LivenessProbe, "/healthz"}, {c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP probe for %s", r.name, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || containerPort(c, p.probe.HTTPGet.Port.String()) != port {
			t.Errorf("%s: probe %s:%s, want %s on port %d (http.listen %q)", r.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path, port, listen)
		}
	}
	for _, svc := range r.services() {
		for _, sp := range svc.Spec.Ports {
			if containerPort(c, sp.TargetPort.String()) != port {
				t.Errorf("%s: Service port %s targets %s, not http.listen's %d", r.name, sp.Name, sp.TargetPort.String(), port)
			}
		}
	}
}

// containerPort resolves a named or numbered port of c.
func containerPort(c corev1.Container, port string) int {
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return int(p.ContainerPort)
		}
	}
	return -1
}

func checkPodSecurity(t *testing.T, where string, pod corev1.PodSpec) {
	t.Helper()
	sc := pod.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext lacks runAsNonRoot: true", where)
	}
	if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod lacks seccompProfile RuntimeDefault", where)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("%s: enableServiceLinks must be false: a Service named herald would inject HERALD_SERVICE_HOST, which Herald refuses", where)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false: Herald never calls the Kubernetes API", where)
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		checkContainerSecurity(t, where+" container "+c.Name, c)
	}
}

func checkContainerSecurity(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: no securityContext", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: root filesystem is writable", where)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Errorf("%s: capabilities do not drop ALL", where)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: no memory request and limit", where)
	}
}

// configMapOf returns the ConfigMap mounted at the directory of configPath.
func configMapOf(t *testing.T, name string, pod corev1.PodSpec, c corev1.Container) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != filepath.Dir(configPath) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				return v.ConfigMap.Name
			}
		}
	}
	t.Fatalf("%s: container %s mounts no ConfigMap at %s", name, c.Name, filepath.Dir(configPath))
	return ""
}

func container(t *testing.T, name string, cs []corev1.Container, want string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == want {
			return c
		}
	}
	t.Fatalf("%s: no container %q", name, want)
	return corev1.Container{}
}

func containerEnv(c corev1.Container) map[string]corev1.EnvVar {
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	return env
}

func only[T any](t *testing.T, name string, items []T) T {
	t.Helper()
	if len(items) != 1 {
		var zero T
		t.Fatalf("%s: %d %T rendered, want 1", name, len(items), zero)
	}
	return items[0]
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestNotesTellWhatToCheck renders NOTES.txt, which `helm install` prints
// (and `helm install --dry-run` cannot show without a cluster): no missing
// values, and every herald command it suggests exists. A copy of the chart
// gets a ConfigMap template that includes NOTES.txt, so `helm template` can
// render it.
func TestNotesTellWhatToCheck(t *testing.T) {
	helmBinary(t)
	chart := filepath.Join(t.TempDir(), "herald")
	if err := os.CopyFS(chart, os.DirFS(repoFile(chartDir))); err != nil {
		t.Fatal(err)
	}
	probe := `apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: |
{{ include (print $.Template.BasePath "/NOTES.txt") . | indent 4 }}
`
	if err := os.WriteFile(filepath.Join(chart, "templates", "zz-notes.yaml"), []byte(probe), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"template", "herald", chart, "--namespace", "herald", "--kube-version", kubeVersion,
				"--show-only", "templates/zz-notes.yaml"}, c.args...)
			out, errOut, err := helm(t, args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, errOut)
			}
			var cm struct {
				Data struct {
					Notes string `json:"notes"`
				} `json:"data"`
			}
			if err := yaml.Unmarshal([]byte(out), &cm); err != nil {
				t.Fatal(err)
			}
			notes := cm.Data.Notes
			for _, bad := range []string{"<no value>", "%!", "<nil>", "map["} {
				if strings.Contains(notes, bad) {
					t.Errorf("NOTES contain %q:\n%s", bad, notes)
				}
			}
			for _, want := range []string{"What to check next", "kubectl -n herald rollout status deploy/herald", "kubectl -n herald logs deploy/herald -c herald"} {
				if !strings.Contains(notes, want) {
					t.Errorf("NOTES lack %q:\n%s", want, notes)
				}
			}
			cmds := regexp.MustCompile(`-- /herald ([^\n]+)`).FindAllStringSubmatch(notes, -1)
			if len(cmds) == 0 {
				t.Errorf("NOTES suggest no herald command:\n%s", notes)
			}
			for _, m := range cmds {
				checkHeraldCommand(t, "NOTES", strings.Fields(m[1]))
			}
		})
	}
}

// badValues each make `helm template`, `helm install` and `helm lint` fail:
// values.schema.json refuses them before anything renders, with the message
// in want.
var badValues = []struct {
	name string
	args []string
	want string
}{
	{"unknown adapter", []string{"--set", "adapter=kafka"}, "at '/adapter': value must be one of 'nats', 'sqs', 'servicebus'"},
	{"unknown database driver", []string{"--set", "database.driver=oracle"}, "at '/database/driver': value must be one of"},
	{"two relays on SQLite", []string{"--set", "database.driver=sqlite", "--set", "replicaCount=2"}, "at '/replicaCount': maximum: got 2, want 1"},
	{"postgres without a DSN", []string{"--set", "database.dsn_secret.name="}, "at '/database/dsn_secret/name': minLength"},
	{"sqs without its block", []string{"--set", "adapter=sqs"}, "at '/sqs': missing property 'queue_url'"},
	{"sqs queue URL that is not one", []string{"--set", "adapter=sqs", "--set", "sqs.queue_url=herald-events"}, "at '/sqs/queue_url'"},
	{"servicebus without namespace or connection string", []string{"--set", "adapter=servicebus", "--set", "servicebus.queue=events"}, "missing property 'namespace'"},
	{"servicebus namespace and connection string", []string{"--set", "adapter=servicebus", "--set", "servicebus.queue=events", "--set", "servicebus.namespace=ns.servicebus.windows.net", "--set", "servicebus.connection_string_secret.name=sb"}, "at '/servicebus/connection_string_secret/name': maxLength: got 2, want 0"},
	{"servicebus without queue or topic", []string{"--set", "adapter=servicebus", "--set", "servicebus.namespace=ns.servicebus.windows.net"}, "missing property 'queue'"},
	{"servicebus queue and topic", []string{"--set", "adapter=servicebus", "--set", "servicebus.namespace=ns.servicebus.windows.net", "--set", "servicebus.queue=q", "--set", "servicebus.topic=t"}, "at '/servicebus/topic': maxLength: got 1, want 0"},
	{"servicebus namespace as a URL", []string{"--set", "adapter=servicebus", "--set", "servicebus.queue=q", "--set", "servicebus.namespace=sb://ns.servicebus.windows.net"}, "at '/servicebus/namespace'"},
	{"inline Service Bus connection string", []string{"--set", "adapter=servicebus", "--set", "servicebus.queue=q", "--set", "servicebus.connection_string=Endpoint=sb://x"}, "additional properties 'connection_string' not allowed"},
	{"misspelt relay key", []string{"--set", "relay.batchsize=5"}, "at '/relay': additional properties 'batchsize' not allowed"},
	{"misspelt top-level key", []string{"--set", "adaptor=sqs"}, "additional properties 'adaptor' not allowed"},
	{"inline NATS password", []string{"--set", "nats.password=hunter2"}, "at '/nats': additional properties 'password' not allowed"},
	{"duration as a bare number", []string{"--set", "relay.lease=30"}, "at '/relay/lease': got number, want string"},
	{"duration without unit", []string{"--set", "relay.lease=30x"}, "at '/relay/lease'"},
	{"batch size out of range", []string{"--set", "relay.batch_size=20000"}, "at '/relay/batch_size'"},
	{"unknown CloudEvents binding", []string{"--set", "nats.binding=json"}, "at '/nats/binding': value must be one of"},
	{"nats URL of another scheme", []string{"--set", "nats.url=http://nats:4222"}, "at '/nats/url'"},
	{"embedded NATS in a cluster", []string{"--set", "nats.url=embedded"}, "at '/nats/url': 'embedded' does not match"},
	{"unknown log level", []string{"--set", "log.level=verbose"}, "at '/log/level': value must be one of"},
	{"no relays", []string{"--set", "replicaCount=0"}, "at '/replicaCount'"},
	{"ServiceMonitor without the health port", []string{"--set", "serviceMonitor.enabled=true", "--set", "health.enabled=false"}, "at '/health/enabled': value must be true"},
	{"malformed IRSA role", []string{"--set", "serviceAccount.aws.roleArn=herald"}, "at '/serviceAccount/aws/roleArn'"},
	{"admin token without the health port", []string{"--set", "health.enabled=false", "--set", "health.adminTokenSecret.name=herald-admin"}, "health"},
	{"retry delay as a bare number", []string{"--set-json", `subscriptions={"retry_schedule":[5]}`}, "at '/subscriptions/retry_schedule/0'"},
	{"misspelt subscriptions key", []string{"--set-json", `subscriptions={"retry":["5s"]}`}, "at '/subscriptions': additional properties 'retry' not allowed"},
	{"webhook without its URL", []string{"--set", "adapter=webhook", "--set", "webhook.secrets_file=/s"}, "at '/webhook': missing property 'url'"},
	{"webhook without secrets", []string{"--set", "adapter=webhook", "--set", "webhook.url=https://h.example.com"}, "missing property 'secrets_file'"},
	{"inline webhook secrets", []string{"--set", "adapter=webhook", "--set", "webhook.url=https://h.example.com", "--set", "webhook.secrets={whsec_x}"}, "at '/webhook': additional properties 'secrets' not allowed"},
	{"unknown destination adapter", []string{"--set-json", `destinations=[{"name":"events","adapter":"kafka"}]`}, "at '/destinations/0/adapter': value must be one of"},
	{"destination named main", []string{"--set-json", `destinations=[{"name":"main","adapter":"sqs","sqs":{"queue_url":"https://sqs.eu-west-1.amazonaws.com/1/q"}}]`}, "at '/destinations/0/name'"},
	{"destination name with capitals", []string{"--set-json", `destinations=[{"name":"Partner","adapter":"sqs","sqs":{"queue_url":"https://sqs.eu-west-1.amazonaws.com/1/q"}}]`}, "at '/destinations/0/name'"},
	{"misspelt key in a destination's block", []string{"--set-json", `destinations=[{"name":"q","adapter":"sqs","sqs":{"queue_url":"https://sqs.eu-west-1.amazonaws.com/1/q","regoin":"x"}}]`}, "at '/destinations/0/sqs': additional properties 'regoin' not allowed"},
	{"destination webhook secrets from a Secret", []string{"--set-json", `destinations=[{"name":"p","adapter":"webhook","webhook":{"url":"https://p.example.com","secrets_file":"/s","secrets_secret":{"name":"p"}}}]`}, "at '/destinations/0/webhook/secrets_secret'"},
	{"destination webhook without secrets_file", []string{"--set-json", `destinations=[{"name":"p","adapter":"webhook","webhook":{"url":"https://p.example.com"}}]`}, "at '/destinations/0/webhook': missing property 'secrets_file'"},
}

func TestChartRejectsBadValues(t *testing.T) {
	helmBinary(t)
	for _, c := range badValues {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"template", "herald", chartDir, "--kube-version", kubeVersion}, c.args...)
			_, errOut, err := helm(t, args...)
			if err == nil {
				t.Fatalf("helm %s succeeded; want a failure mentioning %q", strings.Join(args, " "), c.want)
			}
			if !strings.Contains(errOut, c.want) {
				t.Errorf("helm %s failed without naming the problem: want %q in\n%s", strings.Join(args, " "), c.want, errOut)
			}
			lint := append([]string{"lint", "--strict", chartDir}, c.args...)
			if out, _, err := helm(t, lint...); err == nil {
				t.Errorf("helm %s passed; want it to fail\n%s", strings.Join(lint, " "), out)
			}
		})
	}
}

// The chart's own checks say the same in plain words for whoever renders
// with --skip-schema-validation.
func TestChartChecksWithoutSchema(t *testing.T) {
	helmBinary(t)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"two relays on SQLite", []string{"--set", "database.driver=sqlite", "--set", "replicaCount=2"}, "replicaCount: 2 relays on SQLite: SQLite allows one writer, so set replicaCount: 1"},
		{"postgres without a DSN", []string{"--set", "database.dsn_secret.name="}, "database: driver postgres needs a DSN"},
		{"embedded NATS in a cluster", []string{"--set", "nats.url=embedded"}, "nats.url: embedded runs a private NATS server"},
		{"ServiceMonitor without the health port", []string{"--set", "serviceMonitor.enabled=true", "--set", "health.enabled=false"}, "serviceMonitor.enabled: needs health.enabled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"template", "herald", chartDir, "--kube-version", kubeVersion, "--skip-schema-validation"}, c.args...)
			_, errOut, err := helm(t, args...)
			if err == nil || !strings.Contains(errOut, c.want) {
				t.Errorf("helm %s: want a failure mentioning %q, got %v\n%s", strings.Join(args, " "), c.want, err, errOut)
			}
		})
	}
}

func TestHelmLint(t *testing.T) {
	helmBinary(t)
	good := [][]string{nil}
	for _, f := range valuesFiles(t) {
		good = append(good, []string{"-f", filepath.Join(chartDir, filepath.Base(f))})
	}
	for _, args := range good {
		full := append([]string{"lint", "--strict", chartDir}, args...)
		if out, errOut, err := helm(t, full...); err != nil {
			t.Errorf("helm %s: %v\n%s%s", strings.Join(full, " "), err, out, errOut)
		}
	}
}

// schemaNode is the part of JSON Schema values.schema.json uses.
type schemaNode struct {
	Type       any                   `json:"type"`
	Enum       []any                 `json:"enum"`
	Properties map[string]schemaNode `json:"properties"`
}

func (n schemaNode) yamlType() string {
	if len(n.Enum) > 0 {
		return yamlType(n.Enum[0])
	}
	switch n.Type {
	case "string":
		return "string"
	case "integer", "number":
		return "int"
	case "boolean":
		return "bool"
	case "array":
		return "list"
	case "object":
		return "map"
	}
	return fmt.Sprint(n.Type)
}

// secretOnly are config keys the chart takes only from a Secret
// (`<key>_secret`), never inline in values and so never in the ConfigMap.
var secretOnly = map[string]bool{"nats.password": true, "nats.token": true, "servicebus.connection_string": true, "webhook.secrets": true,
	"subscriptions.secrets_key": true, "subscriptions.previous_secrets_keys": true}

// TestSchemaFollowsConfigKeys keeps values.schema.json, and so the values a
// user can set, 1:1 with config/herald.example.yaml: every config key is
// settable with its type (directly, or from a Secret as `<key>_secret`), and
// no value becomes a key Herald refuses. A new config key fails here until
// the chart learns it.
func TestSchemaFollowsConfigKeys(t *testing.T) {
	var schema schemaNode
	if err := json.Unmarshal(readRepoFile(t, chartDir, "values.schema.json"), &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	known, pending := knownConfigKeys(t)
	if len(pending) > 0 {
		t.Logf("keys of adapters still being written, as the chart assumes them: %s", strings.Join(pending, ", "))
	}
	for _, key := range slices.Sorted(maps.Keys(known)) {
		if strings.HasPrefix(key, "http.") {
			// The chart renders http.listen from health.port behind
			// health.enabled, and http.ingest_token from
			// health.ingestTokenSecret, http.admin_token from
			// health.adminTokenSecret, and the console's keys from
			// health.consoleReadOnly and health.consoleSampleEvery.
			if !slices.Contains([]string{"http.listen", "http.ingest_token", "http.admin_token", "http.console_read_only",
				"http.console_sample_every"}, key) {
				t.Errorf("config key %s: the chart cannot set it; add it to values.yaml, values.schema.json and herald.config in templates/_helpers.tpl", key)
			}
			continue
		}
		node, inline := schemaAt(schema, key)
		ref, fromSecret := schemaAt(schema, key+"_secret")
		switch {
		case secretOnly[key] && inline:
			t.Errorf("config key %s is a secret: values.schema.json must offer only %s_secret, not %s", key, key, key)
		case secretOnly[key] && !fromSecret:
			t.Errorf("config key %s: values.schema.json has no %s_secret, so the chart cannot set it", key, key)
		case fromSecret && (ref.Properties["name"].Type != "string" || (known[key] != "string" && known[key] != "list")):
			// A list arrives comma-separated, as Herald reads lists from the environment.
			t.Errorf("config key %s: %s_secret must be a {name, key} Secret reference for a string or list key", key, key)
		case !inline && !fromSecret:
			t.Errorf("config key %s: values.schema.json has no %s, so the chart cannot set it; add it to values.schema.json (and a comment in values.yaml)", key, key)
		case inline && node.yamlType() != known[key]:
			t.Errorf("config key %s is a %s, values.schema.json says %s", key, known[key], node.yamlType())
		}
	}
	for _, block := range []string{"database", "nats", "sqs", "servicebus", "webhook", "relay", "delivery_log", "log", "enricher", "tracing", "subscriptions"} {
		var walk func(prefix string, n schemaNode)
		walk = func(prefix string, n schemaNode) {
			for _, name := range slices.Sorted(maps.Keys(n.Properties)) {
				key, child := prefix+"."+name, n.Properties[name]
				if _, ok := known[strings.TrimSuffix(key, "_secret")]; ok {
					continue
				}
				if child.yamlType() == "map" && len(child.Properties) > 0 && !strings.HasSuffix(key, "_secret") {
					walk(key, child)
					continue
				}
				t.Errorf("values.schema.json allows %s, which is not a Herald config key: Herald would refuse it at boot", key)
			}
		}
		walk(block, schema.Properties[block])
	}
	for _, top := range slices.Sorted(maps.Keys(exampleConfig(t))) {
		if _, ok := schema.Properties[top]; !ok && top != "http" {
			t.Errorf("config block %s: the chart has no value for it", top)
		}
	}
}

func schemaAt(n schemaNode, key string) (schemaNode, bool) {
	for _, part := range strings.Split(key, ".") {
		next, ok := n.Properties[part]
		if !ok {
			return schemaNode{}, false
		}
		n = next
	}
	return n, true
}

// TestValuesFilesDifferOnlyInTheirAdapter: moving between on-prem, AWS and
// Azure is the adapter value, its block and the cloud identity; everything
// else in the ready-made values files is the same.
func TestValuesFilesDifferOnlyInTheirAdapter(t *testing.T) {
	perCloud := []string{"adapter", "nats", "sqs", "servicebus", "serviceAccount"}
	var first map[string]any
	var firstName string
	for _, f := range valuesFiles(t) {
		var v map[string]any
		if err := yaml.Unmarshal(readRepoFile(t, chartDir, filepath.Base(f)), &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, ok := v["adapter"]; !ok {
			t.Errorf("%s does not say which adapter it is for", filepath.Base(f))
		}
		for _, k := range perCloud {
			delete(v, k)
		}
		if first == nil {
			first, firstName = v, filepath.Base(f)
			continue
		}
		if !equalJSON(first, v) {
			t.Errorf("%s and %s differ beyond %v:\n%v\n%v", firstName, filepath.Base(f), perCloud, first, v)
		}
	}
}

// Negative controls: the checks above catch what they claim to.
func TestChecksCatchMistakes(t *testing.T) {
	t.Run("strict decoding rejects a misspelt field", func(t *testing.T) {
		_, errs := decodeManifests("control", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replica: 2
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {containers: [{name: c, image: i}]}
`)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), `unknown field "spec.replica"`) {
			t.Errorf("a misspelt Deployment field decoded: %v", errs)
		}
		_, errs = decodeManifests("control", `
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  endpoints: [{port: http, pth: /metrics}]
`)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "pth") {
			t.Errorf("a misspelt ServiceMonitor field decoded: %v", errs)
		}
	})
	t.Run("herald refuses a config the schema lets through", func(t *testing.T) {
		helmBinary(t)
		// A duration to the schema, but herald wants a lease of a second at least.
		r := render(t, "control", "--set", "relay.lease=500ms")
		d := only(t, r.name, r.deployments())
		relay := container(t, r.name, d.Spec.Template.Spec.Containers, "herald")
		cfg := r.configMap(t, configMapOf(t, r.name, d.Spec.Template.Spec, relay)).Data["herald.yaml"]
		out, refused := heraldRefuses(t, cfg, podEnv(relay, "postgres"))
		if !refused || !strings.Contains(out, "relay.lease: must be at least 1s") {
			t.Errorf("herald accepted relay.lease 500ms (refused %v):\n%s", refused, out)
		}
		if onlyPending(out, []string{"sqs", "servicebus"}) {
			t.Errorf("a real config error passed as a pending adapter's:\n%s", out)
		}
	})
	t.Run("a command the CLI lacks", func(t *testing.T) {
		for _, args := range [][]string{{"serve", "--conf", "x"}, {"outbox", "frob"}, {"relay"}} {
			out, err := runHerald(t, nil, append(args, "--help")...)
			usage := regexp.MustCompile(`(?m)^Usage:\s*\n\s+(.+)$`).FindStringSubmatch(out)
			if err == nil && usage != nil && strings.HasPrefix(usage[1]+" ", "herald "+strings.Join(args, " ")+" ") {
				t.Errorf("herald %v looks valid", args)
			}
		}
	})
}
