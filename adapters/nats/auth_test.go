package nats_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/nats"
)

// TestAuthentication proves each authentication option against a real
// server that requires that method: the right credentials publish, none
// and wrong ones are refused with an authorization error that does not
// echo the secret.
func TestAuthentication(t *testing.T) {
	dir := t.TempDir()
	otherSeedFile := writeFile(t, dir, "other.nk", userSeed(t, mustUser(t)))

	userKP := mustUser(t)
	userPub, err := userKP.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := writeFile(t, dir, "relay.nk", userSeed(t, userKP))
	operator := newOperatorSetup(t)

	tests := []struct {
		name   string
		server server.Options
		good   nats.Option
		wrong  nats.Option
		secret string // must not appear in any error
	}{
		{
			name:   "Token",
			server: server.Options{Authorization: "s3cret-token"},
			good:   nats.WithToken("s3cret-token"),
			wrong:  nats.WithToken("guess"),
			secret: "s3cret-token",
		},
		{
			name:   "UserPassword",
			server: server.Options{Users: []*server.User{{Username: "relay", Password: "s3cret-pw"}}},
			good:   nats.WithUserPassword("relay", "s3cret-pw"),
			wrong:  nats.WithUserPassword("relay", "guess"),
			secret: "s3cret-pw",
		},
		{
			name:   "NKey",
			server: server.Options{Nkeys: []*server.NkeyUser{{Nkey: userPub}}},
			good:   nats.WithNKeySeedFile(seedFile),
			wrong:  nats.WithNKeySeedFile(otherSeedFile),
		},
		{
			// Operator mode: the server trusts an operator, which signed
			// the account, which signed the user in the creds file.
			name:   "CredsFile",
			server: operator.serverOptions(),
			good:   nats.WithCredsFile(operator.credsFile(t, dir, "relay.creds", operator.account)),
			wrong:  nats.WithCredsFile(operator.credsFile(t, dir, "stranger.creds", mustAccount(t))),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, tt.server)
			serverURL := srv.ClientURL()

			p, err := nats.Connect(t.Context(), serverURL, tt.good, nats.WithLogger(discardLogger()))
			if err != nil {
				t.Fatalf("connect with the right credentials: %v", err)
			}
			t.Cleanup(func() { _ = p.Close() })
			msg := adapters.Message{ID: "auth-1", Type: "auth.checked", Payload: []byte(`{}`)}
			if r := p.Publish(t.Context(), []adapters.Message{msg}); r[0].Err != nil {
				t.Fatalf("publish: %v", r[0].Err)
			}

			for name, opts := range map[string][]nats.Option{
				"none":  nil,
				"wrong": {tt.wrong},
			} {
				_, err := nats.Connect(t.Context(), serverURL, append(opts, nats.WithLogger(discardLogger()))...)
				if !errors.Is(err, natsgo.ErrAuthorization) {
					t.Errorf("%s credentials: err = %v, want natsgo.ErrAuthorization", name, err)
				}
				if tt.secret != "" && err != nil && strings.Contains(err.Error(), tt.secret) {
					t.Errorf("%s credentials: error %q shows the secret", name, err)
				}
			}
		})
	}
}

// TestTLS proves WithTLS against servers with TLS and with mutual TLS, on
// certificates made here for the test.
func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	tlsSrv := startServer(t, server.Options{TLS: true, TLSConfig: pki.serverTLS(t, false)})
	mtlsSrv := startServer(t, server.Options{TLS: true, TLSVerify: true, TLSConfig: pki.serverTLS(t, true)})
	tlsURL := "tls://" + hostPort(t, tlsSrv.ClientURL())
	mtlsURL := "tls://" + hostPort(t, mtlsSrv.ClientURL())

	tests := []struct {
		name string
		url  string
		opts []nats.Option
		ok   bool
	}{
		{"ServerCA", tlsURL, []nats.Option{nats.WithTLS(pki.caFile, "", "")}, true},
		// WithTLS upgrades a nats:// URL too: a config need not repeat it
		// in the scheme.
		{"NatsSchemeUpgraded", tlsSrv.ClientURL(), []nats.Option{nats.WithTLS(pki.caFile, "", "")}, true},
		// The system roots do not know the test CA.
		{"UnknownCA", tlsURL, nil, false},
		{"ClientCert", mtlsURL, []nats.Option{nats.WithTLS(pki.caFile, pki.clientCert, pki.clientKey)}, true},
		// Same CA, no client certificate: the server must refuse it.
		{"MissingClientCert", mtlsURL, []nats.Option{nats.WithTLS(pki.caFile, "", "")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := nats.Connect(t.Context(), tt.url, append(tt.opts, nats.WithLogger(discardLogger()))...)
			if !tt.ok {
				if err == nil {
					_ = p.Close()
					t.Fatal("connected, want the TLS handshake refused")
				}
				// A refused client certificate surfaces either as the
				// server's TLS alert or as the connection closed right
				// after the handshake, depending on timing.
				if !errors.Is(err, natsgo.ErrTLS) && !strings.Contains(err.Error(), "remote error: tls") {
					t.Fatalf("err = %v, want a TLS error", err)
				}
				if tt.name == "UnknownCA" && !strings.Contains(err.Error(), "unknown authority") {
					t.Fatalf("err = %v, want the unknown CA named", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			t.Cleanup(func() { _ = p.Close() })
			msg := adapters.Message{ID: "tls-1", Type: "tls.checked", Payload: []byte(`{}`)}
			if r := p.Publish(t.Context(), []adapters.Message{msg}); r[0].Err != nil {
				t.Fatalf("publish: %v", r[0].Err)
			}
		})
	}
}

// TestSeveralURLsFirstDead: with a dead server listed first (and the pool
// kept in the given order, so the dead one really is tried first), Connect
// goes on to the live one.
func TestSeveralURLsFirstDead(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	dead := closedPort(t)
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, "nats://"+dead+", "+srv.ClientURL(),
		nats.WithConnectOptions(natsgo.DontRandomize()))
	msg := adapters.Message{ID: "multi-1", Type: "x", Payload: []byte(`{}`)}
	if r := p.Publish(t.Context(), []adapters.Message{msg}); r[0].Err != nil {
		t.Fatalf("publish: %v", r[0].Err)
	}
	if n := iso.messageCount(t); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// TestConnectionOptionsAreValidated: every connection option checks its
// input when applied, before any dialling, with an error naming it.
func TestConnectionOptionsAreValidated(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t)
	missing := filepath.Join(dir, "missing")
	garbage := writeFile(t, dir, "garbage", []byte("not a key\n"))
	seedOnly := writeFile(t, dir, "seed.nk", userSeed(t, mustUser(t)))
	unreadable := writeFile(t, dir, "unreadable", userSeed(t, mustUser(t)))
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		opts   []nats.Option
		option string // the option the error must name
		detail string // and a further substring
	}{
		{"creds missing", []nats.Option{nats.WithCredsFile(missing)}, "WithCredsFile", "no such file"},
		{"creds empty path", []nats.Option{nats.WithCredsFile("")}, "WithCredsFile", "empty"},
		{"creds without JWT", []nats.Option{nats.WithCredsFile(seedOnly)}, "WithCredsFile", "no user JWT"},
		{"nkey missing", []nats.Option{nats.WithNKeySeedFile(missing)}, "WithNKeySeedFile", "no such file"},
		{"nkey garbage", []nats.Option{nats.WithNKeySeedFile(garbage)}, "WithNKeySeedFile", garbage},
		{"token empty", []nats.Option{nats.WithToken("")}, "WithToken", "empty"},
		{"user empty", []nats.Option{nats.WithUserPassword("", "pw")}, "WithUserPassword", "user is empty"},
		{"two methods", []nats.Option{nats.WithToken("t"), nats.WithUserPassword("u", "p")}, "WithUserPassword", "WithToken"},
		{"tls cert without key", []nats.Option{nats.WithTLS("", pki.clientCert, "")}, "WithTLS", "go together"},
		{"tls CA missing", []nats.Option{nats.WithTLS(missing, "", "")}, "WithTLS", "no such file"},
		{"tls CA not PEM", []nats.Option{nats.WithTLS(garbage, "", "")}, "WithTLS", "no PEM certificate"},
		{"tls key mismatch", []nats.Option{nats.WithTLS("", pki.clientCert, pki.serverKey)}, "WithTLS", "private key does not match"},
		{"tls twice", []nats.Option{nats.WithTLS("", "", ""), nats.WithTLS("", "", "")}, "WithTLS", "more than once"},
		{"binding", []nats.Option{nats.WithBinding(nats.Binding(7))}, "WithBinding", "unknown"},
	}
	// Root ignores file permissions, so only check them when they bite.
	if f, err := os.Open(unreadable); err == nil {
		_ = f.Close()
	} else {
		tests = append(tests, struct {
			name   string
			opts   []nats.Option
			option string
			detail string
		}{"nkey unreadable", []nats.Option{nats.WithNKeySeedFile(unreadable)}, "WithNKeySeedFile", "permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := nats.Connect(t.Context(), "nats://127.0.0.1:1", tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.option) || !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("err = %v, want one naming %s and containing %q", err, tt.option, tt.detail)
			}
		})
	}
}

// TestNewRefusesConnectionOptions: New's caller owns the connection, so
// credentials or TLS given to New could only be silently ignored.
func TestNewRefusesConnectionOptions(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	nc, err := natsgo.Connect(srv.ClientURL(), natsgo.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	_, err = nats.New(t.Context(), nc, nats.WithToken("t"), nats.WithTLS("", "", ""), nats.WithLogger(discardLogger()))
	if err == nil || !strings.Contains(err.Error(), "WithToken, WithTLS") {
		t.Fatalf("err = %v, want one naming WithToken and WithTLS", err)
	}
}

// startServer runs an embedded JetStream server with the given options
// (authentication, TLS) on a random port.
func startServer(t *testing.T, opts server.Options) *server.Server {
	t.Helper()
	opts.Host = "127.0.0.1"
	opts.Port = server.RANDOM_PORT
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return srv
}

// operatorSetup is a minimal decentralised-auth world: an operator, a
// system account and one account with JetStream, served from memory.
type operatorSetup struct {
	operator nkeys.KeyPair
	claims   *jwt.OperatorClaims
	resolver *server.MemAccResolver
	system   string
	account  nkeys.KeyPair
}

func newOperatorSetup(t *testing.T) *operatorSetup {
	t.Helper()
	op, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opPub, _ := op.PublicKey()
	o := &operatorSetup{operator: op, resolver: &server.MemAccResolver{}, account: mustAccount(t)}

	sys := mustAccount(t)
	o.system, _ = sys.PublicKey()
	o.storeAccount(t, sys, false)
	o.storeAccount(t, o.account, true)

	oc := jwt.NewOperatorClaims(opPub)
	oc.SystemAccount = o.system
	token, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	// The server wants the claims as decoded from a signed JWT.
	if o.claims, err = jwt.DecodeOperatorClaims(token); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *operatorSetup) storeAccount(t *testing.T, acc nkeys.KeyPair, jetStream bool) {
	t.Helper()
	pub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	if jetStream {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	token, err := ac.Encode(o.operator)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.resolver.Store(pub, token); err != nil {
		t.Fatal(err)
	}
}

func (o *operatorSetup) serverOptions() server.Options {
	return server.Options{
		TrustedOperators: []*jwt.OperatorClaims{o.claims},
		AccountResolver:  o.resolver,
		SystemAccount:    o.system,
	}
}

// credsFile writes a creds file for a new user signed by account, which
// the server trusts only if it is the operator's.
func (o *operatorSetup) credsFile(t *testing.T, dir, name string, account nkeys.KeyPair) string {
	t.Helper()
	user := mustUser(t)
	pub, _ := user.PublicKey()
	token, err := jwt.NewUserClaims(pub).Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, creds)
}

func mustUser(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func mustAccount(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func userSeed(t *testing.T, kp nkeys.KeyPair) []byte {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return append(seed, '\n')
}

func writeFile(t *testing.T, dir, name string, contents []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, contents, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedPort returns a local address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, made fresh for each test and written to its temp dir.
type testPKI struct {
	caFile                string
	serverCert, serverKey string
	clientCert, clientKey string
	caCert                *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	dir                   string
	serial                int64
	notBefore, notAfter   time.Time
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	now := time.Now()
	p := &testPKI{dir: t.TempDir(), notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)}
	p.caKey = newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "herald test CA"},
		NotBefore:             p.notBefore,
		NotAfter:              p.notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.caFile = writeFile(t, p.dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	p.serverCert, p.serverKey = p.leaf(t, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.leaf(t, "herald-relay", x509.ExtKeyUsageClientAuth)
	return p
}

// leaf issues a certificate signed by the CA and writes it and its key.
func (p *testPKI) leaf(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	p.serial++
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial + 1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    p.notBefore,
		NotAfter:     p.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, p.dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile = writeFile(t, p.dir, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

// serverTLS is the server's side: its certificate and, for mutual TLS,
// the CA that client certificates must chain to.
func (p *testPKI) serverTLS(t *testing.T, requireClientCert bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if requireClientCert {
		pool := x509.NewCertPool()
		pool.AddCert(p.caCert)
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestLeastPrivilege proves the permissions docs/adapters/nats.md lists:
// with exactly these, the relay provisions (creates, then updates) its
// stream and publishes; without provisioning it needs only STREAM.INFO.
// A negative control shows the server really enforces them.
func TestLeastPrivilege(t *testing.T) {
	const stream = "LEASTPRIV"
	relayUser := func(allowPublish ...string) *server.User {
		return &server.User{Username: "relay", Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: allowPublish},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}}
	}
	provisioning := relayUser("herald.>",
		"$JS.API.STREAM.INFO."+stream, "$JS.API.STREAM.CREATE."+stream, "$JS.API.STREAM.UPDATE."+stream)
	publishOnly := relayUser("herald.>", "$JS.API.STREAM.INFO."+stream)

	connect := func(ctx context.Context, srv *server.Server, opts ...nats.Option) (*nats.Publisher, error) {
		return nats.Connect(ctx, srv.ClientURL(), append([]nats.Option{
			nats.WithUserPassword("relay", "pw"), nats.WithStream(stream, "herald.>"),
			nats.WithLogger(discardLogger()),
		}, opts...)...)
	}
	publish := func(t *testing.T, p *nats.Publisher) {
		t.Helper()
		msg := adapters.Message{ID: "perm-" + randomHex(t), Type: "perm.checked", Payload: []byte(`{}`)}
		if r := p.Publish(t.Context(), []adapters.Message{msg}); r[0].Err != nil {
			t.Fatalf("publish: %v", r[0].Err)
		}
	}

	t.Run("ProvisionCreateThenUpdate", func(t *testing.T) {
		srv := startServer(t, server.Options{Users: []*server.User{provisioning}})
		p, err := connect(t.Context(), srv)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		publish(t, p)
		_ = p.Close()
		// A changed duplicate window makes the second relay update it.
		p, err = connect(t.Context(), srv, nats.WithDuplicateWindow(time.Minute))
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		t.Cleanup(func() { _ = p.Close() })
		publish(t, p)
	})

	t.Run("NoProvisioning", func(t *testing.T) {
		admin := &server.User{Username: "admin", Password: "pw"}
		srv := startServer(t, server.Options{Users: []*server.User{admin, publishOnly}})
		nc, err := natsgo.Connect(srv.ClientURL(), natsgo.UserInfo("admin", "pw"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
			Name: stream, Subjects: []string{"herald.>"}, Duplicates: time.Minute,
		}); err != nil {
			t.Fatal(err)
		}
		p, err := connect(t.Context(), srv, nats.WithProvisionStream(false))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { _ = p.Close() })
		publish(t, p)
	})

	t.Run("NegativeControl", func(t *testing.T) {
		srv := startServer(t, server.Options{Users: []*server.User{publishOnly}})
		// The server drops the denied create request, so only a timeout
		// ends the wait.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		p, err := connect(ctx, srv)
		if err == nil {
			_ = p.Close()
			t.Fatal("provisioned a stream without $JS.API.STREAM.CREATE permission")
		}
		if !strings.Contains(err.Error(), "create stream") {
			t.Fatalf("err = %v, want the stream creation to fail", err)
		}
	})
}
