package redact

import (
	"net/url"
	"strings"
)

// Mask is what every hidden value is replaced with.
const Mask = "xxxxx"

// URL returns raw fit to show: its password, a user given without a
// password, every query value and the fragment replaced by [Mask]; scheme,
// user name, host, path and query keys stay. Text that does not parse as a
// URL is masked from its start up to the last "@".
func URL(raw string) string {
	shown, _ := redactURL(raw, false)
	return shown
}

// URLs is [URL] for each entry of a comma-separated list, such as NATS
// server URLs.
func URLs(list string) string {
	if list == "" {
		return ""
	}
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = URL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactURL returns raw with its secrets masked, and the secrets it masked.
// keepUser keeps a user given without a password, which for a database is
// a role name, not a token.
func redactURL(raw string, keepUser bool) (string, []string) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || hidesCredentials(u) {
		return roughURL(raw, keepUser)
	}
	if (u.User == nil || keepUser && !hasPassword(u.User)) && u.RawQuery == "" && u.Fragment == "" {
		return raw, nil // nothing to mask: shown exactly as written
	}
	var secrets []string
	if u.User != nil {
		name := u.User.Username()
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw)
			u.User = url.UserPassword(name, Mask)
		} else if !keepUser {
			secrets = append(secrets, name)
			u.User = url.User(Mask)
		}
	}
	var found []string
	u.RawQuery, found = maskQuery(u.RawQuery)
	secrets = append(secrets, found...)
	if u.Fragment != "" {
		if looksSecret("", u.Fragment) {
			secrets = append(secrets, u.Fragment)
		}
		u.Fragment, u.RawFragment = Mask, ""
	}
	return u.String(), secrets
}

func hasPassword(u *url.Userinfo) bool {
	_, ok := u.Password()
	return ok
}

// hidesCredentials reports a URL whose "@" the parser did not take as the
// end of user information, because a password with an unescaped '/', '?'
// or '#' cut the authority short: "nats://u:1/2@host" parses as host "u:1"
// and path "/2@host".
func hidesCredentials(u *url.URL) bool {
	if u.User != nil {
		return false
	}
	return strings.Contains(u.Path, "@") || strings.Contains(u.Fragment, "@") ||
		(u.Port() != "" && strings.Contains(u.RawQuery, "@"))
}

// roughURL masks what may be credentials in text that is not a well-formed
// URL: everything between the scheme and the last "@" (bar a user name before
// a ':'), then every query value and the fragment.
func roughURL(raw string, keepUser bool) (string, []string) {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + len("://")
	}
	head, rest := raw[:start], raw[start:]
	var secrets []string
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		info := rest[:at]
		user, pw, hasPassword := strings.Cut(info, ":")
		switch {
		case hasPassword && !strings.ContainsAny(user, "/?#"):
			secrets = append(secrets, pw)
			head += user + ":" + Mask
		case !hasPassword && keepUser && !strings.ContainsAny(info, "/?#"):
			head += info
		default:
			secrets = append(secrets, info)
			head += Mask
		}
		head += "@"
		rest = rest[at+1:]
	}
	rest, fragment, hasFragment := strings.Cut(rest, "#")
	if hasFragment && fragment != "" {
		if looksSecret("", fragment) {
			secrets = append(secrets, fragment)
		}
		fragment = Mask
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	shown := head + rest
	if hasQuery {
		masked, found := maskQuery(query)
		secrets = append(secrets, found...)
		shown += "?" + masked
	}
	if hasFragment {
		shown += "#" + fragment
	}
	return shown, secrets
}

// maskQuery replaces every value of a query string, keeping its keys; a
// part without "=" may itself be a token and is masked whole.
func maskQuery(query string) (string, []string) {
	if query == "" {
		return "", nil
	}
	parts := strings.Split(query, "&")
	var secrets []string
	for i, p := range parts {
		if p == "" {
			continue
		}
		key, value, ok := strings.Cut(p, "=")
		if !ok {
			if looksSecret("", p) {
				secrets = append(secrets, p)
			}
			parts[i] = Mask
			continue
		}
		if value == "" {
			continue
		}
		if looksSecret(key, value) {
			secrets = append(secrets, value)
		}
		parts[i] = key + "=" + Mask
	}
	return strings.Join(parts, "&"), secrets
}

// looksSecret tells, for [Secrets], which query values and fragments to hunt
// for in other text. Every one is masked in the URL itself; but searching for
// "disable" or "true" everywhere would mask half of every log line, so a
// value counts as a secret when its key names a credential or it is long
// enough to be a generated token.
func looksSecret(key, value string) bool {
	if len(value) >= 12 {
		return true
	}
	key = strings.ToLower(key)
	for _, word := range []string{"token", "key", "secret", "pass", "pwd", "sig", "auth", "cred", "session", "code"} {
		if strings.Contains(key, word) {
			return true
		}
	}
	return false
}

// DSN returns a data source name fit to show, for the database drivers
// Herald accepts: "postgres" (a postgres:// URL, or libpq key=value pairs),
// "mysql" (go-sql-driver's user:pass@tcp(host:3306)/db?params) and
// "sqlite" (a file path, shown unchanged). The password and every
// parameter value are masked; the user name stays. For another driver the
// form is guessed, erring on the side of masking.
func DSN(driver, dsn string) string {
	shown, _ := redactDSN(driver, dsn)
	return shown
}

func redactDSN(driver, dsn string) (string, []string) {
	switch driver {
	case "sqlite":
		return dsn, nil
	case "postgres":
		if isPostgresURL(dsn) {
			return redactURL(dsn, true)
		}
		return redactKeyValues(dsn)
	case "mysql":
		return redactMySQL(dsn)
	}
	switch {
	case strings.Contains(dsn, "://"):
		return redactURL(dsn, true)
	case strings.Contains(dsn, "="):
		return redactKeyValues(dsn)
	case strings.Contains(dsn, "@"):
		return redactMySQL(dsn)
	}
	return dsn, nil
}

func isPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// redactKeyValues masks the passwords of a libpq connection string:
// key=value pairs separated by spaces, a value either bare or single-quoted
// with backslash escapes.
func redactKeyValues(dsn string) (string, []string) {
	var b strings.Builder
	var secrets []string
	i := 0
	for i < len(dsn) {
		// Copy the spaces and the key, up to '='.
		eq := strings.IndexByte(dsn[i:], '=')
		if eq < 0 {
			b.WriteString(dsn[i:])
			break
		}
		key := strings.TrimSpace(dsn[i : i+eq])
		b.WriteString(dsn[i : i+eq+1])
		i += eq + 1
		for i < len(dsn) && dsn[i] == ' ' {
			b.WriteByte(' ')
			i++
		}
		end, value := scanValue(dsn, i)
		raw := dsn[i:end]
		i = end
		if !strings.Contains(strings.ToLower(key), "password") || raw == "" {
			b.WriteString(raw)
			continue
		}
		secrets = append(secrets, value)
		if raw[0] == '\'' {
			b.WriteString("'" + Mask + "'")
		} else {
			b.WriteString(Mask)
		}
	}
	return b.String(), secrets
}

// scanValue reads the libpq value starting at dsn[i], returning where it
// ends and its unescaped text. An unterminated quote runs to the end.
func scanValue(dsn string, i int) (int, string) {
	var v strings.Builder
	quoted := i < len(dsn) && dsn[i] == '\''
	if quoted {
		i++
	}
	for i < len(dsn) {
		c := dsn[i]
		switch {
		case c == '\\' && i+1 < len(dsn):
			v.WriteByte(dsn[i+1])
			i += 2
			continue
		case quoted && c == '\'':
			return i + 1, v.String()
		case !quoted && (c == ' ' || c == '\t' || c == '\n'):
			return i, v.String()
		}
		v.WriteByte(c)
		i++
	}
	return i, v.String()
}

// redactMySQL masks the password and every parameter value of a
// go-sql-driver DSN, [user[:password]@][net[(addr)]]/dbname[?params],
// finding its parts as the driver does: the last '/', the last '@' before
// it, the first ':' before that.
func redactMySQL(dsn string) (string, []string) {
	slash := strings.LastIndexByte(dsn, '/')
	if slash < 0 {
		// The driver refuses it; mask whatever precedes an '@'.
		if !strings.Contains(dsn, "@") {
			return dsn, nil
		}
		return roughURL(dsn, true)
	}
	var secrets []string
	head, tail := dsn[:slash], dsn[slash:]
	if at := strings.LastIndexByte(head, '@'); at >= 0 {
		if user, pw, ok := strings.Cut(head[:at], ":"); ok {
			secrets = append(secrets, pw)
			head = user + ":" + Mask + head[at:]
		}
	}
	if db, params, ok := strings.Cut(tail, "?"); ok {
		masked, found := maskQuery(params)
		secrets = append(secrets, found...)
		tail = db + "?" + masked
	}
	return head + tail, secrets
}
