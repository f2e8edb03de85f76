package nats

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// The options in this file configure the connection Connect makes: who the
// relay is (one authentication method) and how the link is secured (TLS).
// Each checks its files when applied, so a missing or malformed file fails
// at boot naming the option, not on some later reconnect. The files are
// read again on every (re)connect, so rotated credentials and certificates
// are picked up without restarting the relay.

// WithCredsFile authenticates with a NATS credentials file (a user JWT and
// its NKey seed, as written by `nsc generate creds`): the decentralised,
// operator-mode authentication of NATS accounts.
func WithCredsFile(path string) Option {
	return func(c *config) error {
		const name = "WithCredsFile"
		if err := c.setAuth(name); err != nil {
			return err
		}
		contents, err := readFileOption(name, path)
		if err != nil {
			return err
		}
		defer wipe(contents)
		if !bytes.Contains(contents, []byte("BEGIN NATS USER JWT")) {
			return fmt.Errorf("%s: %s holds no user JWT (want a .creds file from nsc)", name, path)
		}
		kp, err := nkeys.ParseDecoratedUserNKey(contents)
		if err != nil {
			return fmt.Errorf("%s: %s: user seed: %w", name, path, err)
		}
		kp.Wipe()
		c.connectOptions = append(c.connectOptions, natsgo.UserCredentials(path))
		return nil
	}
}

// WithNKeySeedFile authenticates with an NKey: the file holds the user's
// seed ("SU…"); the server knows only the public key.
func WithNKeySeedFile(path string) Option {
	return func(c *config) error {
		const name = "WithNKeySeedFile"
		if err := c.setAuth(name); err != nil {
			return err
		}
		if _, err := readFileOption(name, path); err != nil {
			return err
		}
		opt, err := natsgo.NkeyOptionFromSeed(path)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", name, path, err)
		}
		c.connectOptions = append(c.connectOptions, opt)
		return nil
	}
}

// WithToken authenticates with a shared token (the server's
// authorization.token).
func WithToken(token string) Option {
	return func(c *config) error {
		const name = "WithToken"
		if err := c.setAuth(name); err != nil {
			return err
		}
		if token == "" {
			return fmt.Errorf("%s: token is empty", name)
		}
		c.connectOptions = append(c.connectOptions, natsgo.Token(token))
		return nil
	}
}

// WithUserPassword authenticates with a user name and password. The
// password may be empty, as the server allows; the user may not.
func WithUserPassword(user, password string) Option {
	return func(c *config) error {
		const name = "WithUserPassword"
		if err := c.setAuth(name); err != nil {
			return err
		}
		if user == "" {
			return fmt.Errorf("%s: user is empty", name)
		}
		c.connectOptions = append(c.connectOptions, natsgo.UserInfo(user, password))
		return nil
	}
}

// WithTLS makes every connection use TLS, also to nats:// URLs, and sets
// how the server is verified and how the relay proves who it is:
//
//   - caFile: PEM certificates of the CAs that sign the server's
//     certificate; empty means the system's roots.
//   - certFile, keyFile: the relay's client certificate and key in PEM,
//     for servers that require one (mutual TLS, the server's verify: true);
//     both or neither.
//
// The server's certificate must name the host in the URL. tls:// URLs work
// without this option too, verified against the system's roots.
func WithTLS(caFile, certFile, keyFile string) Option {
	return func(c *config) error {
		const name = "WithTLS"
		if c.tls {
			return fmt.Errorf("%s: given more than once", name)
		}
		if (certFile == "") != (keyFile == "") {
			return fmt.Errorf("%s: certFile and keyFile go together (got cert %q, key %q)", name, certFile, keyFile)
		}
		// Secure first: RootCAs and ClientCert keep the TLS config it sets
		// and only fill in their parts.
		opts := []natsgo.Option{natsgo.Secure(&tls.Config{MinVersion: tls.VersionTLS12})}
		if caFile != "" {
			pem, err := readFileOption(name, caFile)
			if err != nil {
				return err
			}
			if !x509.NewCertPool().AppendCertsFromPEM(pem) {
				return fmt.Errorf("%s: CA file %s holds no PEM certificate", name, caFile)
			}
			opts = append(opts, natsgo.RootCAs(caFile))
		}
		if certFile != "" {
			if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
				return fmt.Errorf("%s: client certificate %s, key %s: %w", name, certFile, keyFile, err)
			}
			opts = append(opts, natsgo.ClientCert(certFile, keyFile))
		}
		c.tls = true
		c.connectOptions = append(c.connectOptions, opts...)
		c.connectOnly = append(c.connectOnly, name)
		return nil
	}
}

// setAuth records the authentication option being applied, refusing a
// second method: the server would check only one of them, and which one
// is not something a config file should leave to chance.
func (c *config) setAuth(name string) error {
	if c.auth != "" {
		return fmt.Errorf("%s: cannot be combined with %s, choose one authentication method", name, c.auth)
	}
	c.auth = name
	c.connectOnly = append(c.connectOnly, name)
	return nil
}

// readFileOption reads a file an option names, so that a wrong path or
// permission is reported at boot by option and path.
func readFileOption(option, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%s: file path is empty", option)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", option, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: %s is empty", option, path)
	}
	return b, nil
}

// wipe overwrites secret file contents once checked, as nats.go does with
// its own copies, so that no seed lingers in memory longer than needed.
func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}

// errConnectOnly is wrapped when New gets options that configure the
// connection, which New's caller made and owns.
var errConnectOnly = errors.New("options that configure the connection apply to Connect only; " +
	"set them on the natsgo.Conn given to New")
