package redact_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/redact"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"embedded", "embedded"},
		// Nothing to mask: shown exactly as written, not re-encoded.
		{"nats://", "nats://"},
		{"https://h/a%2Fb", "https://h/a%2Fb"},
		{"nats://h:4222", "nats://h:4222"},
		{"https://partner.example/hook", "https://partner.example/hook"},
		{"nats://alice:s3cret@h:4222", "nats://alice:xxxxx@h:4222"},
		{"nats://alice:s%40cret@h:4222", "nats://alice:xxxxx@h:4222"},
		// A user alone is a NATS token, or a Git host's.
		{"nats://s3cr3tT0ken@h:4222", "nats://xxxxx@h:4222"},
		{"https://h/hook?token=abc&x=1", "https://h/hook?token=xxxxx&x=xxxxx"},
		{"https://h/hook?abc123", "https://h/hook?xxxxx"},
		{"https://h/hook?a=&b", "https://h/hook?a=&xxxxx"},
		{"https://h/hook#frag", "https://h/hook#xxxxx"},
		{"ftp://u:pw@h/p?token=t0k#f", "ftp://u:xxxxx@h/p?token=xxxxx#xxxxx"},
		{"ws://user:secret@b:80", "ws://user:xxxxx@b:80"},
		// Not URLs the parser takes: masked up to the last '@'.
		{"http://a b/?token=t", "http://a b/?token=xxxxx"},
		{"alice:pw@h:4222", "alice:xxxxx@h:4222"},
		{"t0ken@h:4222", "xxxxx@h:4222"},
		{"127.0.0.1:4222", "127.0.0.1:4222"},
		{"nats://u:pa#ss@h:4222", "nats://u:xxxxx@h:4222"},
		// A password with a '/' or '#' that leaves a valid host:port.
		{"nats://u:1/2@h:4222", "nats://u:xxxxx@h:4222"},
		{"nats://u:1#2@h:4222", "nats://u:xxxxx@h:4222"},
		{"%zz://u:pw@h?k=v", "%zz://u:xxxxx@h?k=xxxxx"},
	} {
		if got := redact.URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"nats://a:4222", "nats://a:4222"},
		{"nats://u:pw@a:4222, nats://tok@b:4222,tls://c:4443", "nats://u:xxxxx@a:4222,nats://xxxxx@b:4222,tls://c:4443"},
		{"a:4222,u:pw@b:4222", "a:4222,u:xxxxx@b:4222"},
	} {
		if got := redact.URLs(tc.in); got != tc.want {
			t.Errorf("URLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDSN(t *testing.T) {
	for _, tc := range []struct{ driver, in, want string }{
		{"sqlite", "herald.db", "herald.db"},
		{"sqlite", "/var/lib/herald/outbox.db", "/var/lib/herald/outbox.db"},
		{"sqlite", "file:outbox.db?_pragma=busy_timeout(5000)", "file:outbox.db?_pragma=busy_timeout(5000)"},
		{"postgres", "postgres://herald:pw@db:5432/portal?sslmode=require", "postgres://herald:xxxxx@db:5432/portal?sslmode=xxxxx"},
		{"postgres", "postgresql://herald@db/portal", "postgresql://herald@db/portal"},
		{"postgres", "postgres://herald@db/portal?password=pw", "postgres://herald@db/portal?password=xxxxx"},
		{"postgres", "postgres://u:pw@h1:5432,h2:5433/db", "postgres://u:xxxxx@h1:5432,h2:5433/db"},
		{"postgres", "host=db user=herald password=pw dbname=portal", "host=db user=herald password=xxxxx dbname=portal"},
		{"postgres", "host=db password = 'p w\\'x' sslmode=disable", "host=db password = 'xxxxx' sslmode=disable"},
		{"postgres", "host=db sslpassword=pw password='unterminated", "host=db sslpassword=xxxxx password='xxxxx'"},
		{"postgres", "host=db user=herald", "host=db user=herald"},
		{"mysql", "root:pw@tcp(127.0.0.1:3306)/herald?parseTime=true", "root:xxxxx@tcp(127.0.0.1:3306)/herald?parseTime=xxxxx"},
		{"mysql", "root:p@ss/w:rd@tcp(db)/herald", "root:xxxxx@tcp(db)/herald"},
		{"mysql", "root@tcp(db)/herald", "root@tcp(db)/herald"},
		{"mysql", "/herald", "/herald"},
		{"mysql", "root:pw@tcp(db)", "root:xxxxx@tcp(db)"},
		{"", "postgres://u:pw@h/db", "postgres://u:xxxxx@h/db"},
		{"", "user=u password=pw", "user=u password=xxxxx"},
		{"", "u:pw@tcp(h)/db", "u:xxxxx@tcp(h)/db"},
	} {
		if got := redact.DSN(tc.driver, tc.in); got != tc.want {
			t.Errorf("DSN(%q, %q) = %q, want %q", tc.driver, tc.in, got, tc.want)
		}
	}
}

func TestSecretsText(t *testing.T) {
	var s redact.Secrets
	s.Add("pa ss/w\"rd", "", "t0k3n")
	s.AddURLs("nats://alice:n4tsPw@h:4222,nats://natsT0ken@h2:4222")
	s.AddURL("https://h/hook?token=q7&sslmode=disable&id=0123456789abcdef")
	s.AddDSN("postgres", "host=db password='pg pw'")
	s.AddDSN("mysql", "root:my@pw@tcp(db)/herald")
	s.AddDSN("sqlite", "herald.db")
	for _, tc := range []struct{ in, want string }{
		{"connect: pa ss/w\"rd", "connect: xxxxx"},
		{`got "pa ss/w\"rd"`, `got "xxxxx"`},
		{"url pa+ss%2Fw%22rd and pa%20ss%2Fw%22rd", "url xxxxx and xxxxx"},
		{"nats://alice:n4tsPw@h natsT0ken", "nats://alice:xxxxx@h xxxxx"},
		{"token=q7 sslmode=disable id=0123456789abcdef", "token=xxxxx sslmode=disable id=xxxxx"},
		{"password=pg pw; my@pw", "password=xxxxx; xxxxx"},
		{"herald.db t0k3n", "herald.db xxxxx"},
	} {
		if got := s.Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var merged redact.Secrets
	merged.Merge(&s)
	if got := merged.Text("nats://alice:n4tsPw@h"); got != "nats://alice:xxxxx@h" {
		t.Errorf("merged Text = %q", got)
	}
	var none *redact.Secrets
	if got := none.Text("pw"); got != "pw" {
		t.Errorf("nil Secrets changed the text: %q", got)
	}
}

func TestSecretsErrorKeepsTheChain(t *testing.T) {
	var s redact.Secrets
	s.Add("hunter2")
	err := s.Error(fmt.Errorf("open /x/hunter2: %w", fs.ErrNotExist))
	if err.Error() != "open /x/xxxxx: file does not exist" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Error = %q, Is(ErrNotExist) = %v", err, errors.Is(err, fs.ErrNotExist))
	}
	plain := errors.New("nothing secret")
	if got := s.Error(plain); got != plain || s.Error(nil) != nil { //nolint:errorlint // the very value is the point
		t.Error("an error without a secret should come back as it is")
	}
}

type secretStringer struct{}

func (secretStringer) String() string { return "hunter2 inside" }

func TestSecretsHandler(t *testing.T) {
	var s redact.Secrets
	s.Add("hunter2")
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		var h slog.Handler = slog.NewTextHandler(&buf, nil)
		if format == "json" {
			h = slog.NewJSONHandler(&buf, nil)
		}
		log := slog.New(s.Handler(h)).With("dsn", "pw=hunter2").WithGroup("g")
		log.Info("connect hunter2", "error", errors.New("auth hunter2 refused"), "who", secretStringer{},
			"list", []string{"a", "hunter2"}, "n", 42, slog.Group("inner", "url", "nats://u:hunter2@h"),
			"plain", struct{ A int }{7})
		out := buf.String()
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s log shows the secret: %s", format, out)
		}
		for _, want := range []string{"connect xxxxx", "auth xxxxx refused", "42", "xxxxx inside", "nats://u:xxxxx@h"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s log lacks %q: %s", format, want, out)
			}
		}
	}
}
