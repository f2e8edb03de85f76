package console

// Sign-in, sessions and CSRF. The admin token is asked for once and
// exchanged for a random session id, kept here in memory: a restart signs
// everyone out, which for a console of one process is the right trade
// against a signing key to manage. Each session has its own CSRF token,
// sent back in a hidden field of every form and in htmx's X-CSRF-Token
// header; a POST without it is refused, as is one the browser says came
// from another site.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// CookieName is the session cookie's name.
const CookieName = "herald_console"

// CSRFField and CSRFHeader carry the session's CSRF token in a form and in
// an htmx request.
const (
	CSRFField  = "csrf"
	CSRFHeader = "X-CSRF-Token"
)

type session struct {
	csrf    string
	expires time.Time
	flash   string // shown once, on the next page
}

type sessions struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, byID: map[string]*session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	// crypto/rand.Read never fails (Go 1.24+): it panics instead.
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create() (id string, sess session) {
	id, sess = randomToken(), session{csrf: randomToken(), expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[id] = &sess
	return id, sess
}

// get returns the request's live session.
func (s *sessions) get(r *http.Request) (string, session, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return "", session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[ck.Value]
	if !ok {
		return "", session{}, false
	}
	if !s.now().Before(sess.expires) {
		delete(s.byID, ck.Value)
		return "", session{}, false
	}
	return ck.Value, *sess, true
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// setFlash keeps msg for the session's next page.
func (s *sessions) setFlash(id, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.byID[id]; ok {
		sess.flash = msg
	}
}

// takeFlash returns the message for this page, once.
func (s *sessions) takeFlash(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[id]
	if !ok {
		return ""
	}
	msg := sess.flash
	sess.flash = ""
	return msg
}

// prune forgets expired sessions, so that the map does not grow with
// sign-ins nobody signed out of.
func (s *sessions) prune() {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sess := range s.byID {
		if !now.Before(sess.expires) {
			delete(s.byID, id)
		}
	}
}

type sessionKey struct{}

type sessionValue struct {
	id   string
	sess session
}

func withSession(ctx context.Context, id string, s session) context.Context {
	return context.WithValue(ctx, sessionKey{}, sessionValue{id, s})
}

func sessionOf(ctx context.Context) (sessionValue, bool) {
	v, ok := ctx.Value(sessionKey{}).(sessionValue)
	return v, ok
}

// validCSRF reports whether the request carries the session's token.
func validCSRF(r *http.Request, want string) bool {
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		got = r.PostFormValue(CSRFField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin refuses what a browser marks as coming from elsewhere:
// Sec-Fetch-Site other than same-origin (or none: typed by the user), or
// an Origin whose host is not this request's. A client that sends neither,
// curl say, is not a browser another site can drive.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true // the browser's own word, more precise than Origin
	case "", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (c *Console) tokenMatches(got string) bool { return c.token.Matches(got) }

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// safeNext keeps a sign-in's return path inside the console, so that the
// sign-in page cannot be used to send someone elsewhere.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/"
	}
	return next
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.sessions.get(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "sign-in", "Sign in", map[string]string{"Next": safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	next := safeNext(r.PostFormValue("next"))
	if !c.tokenMatches(r.PostFormValue("token")) {
		c.log.LogAttrs(r.Context(), slog.LevelWarn, "console: sign-in with a wrong token", slog.String("remote", r.RemoteAddr))
		c.renderError(w, r, http.StatusUnauthorized, "sign-in", "Sign in", map[string]string{"Next": next},
			"That is not the admin token (http.admin_token).")
		return
	}
	id, _ := c.sessions.create()
	c.setCookie(w, r, id, int(c.cfg.SessionTTL.Seconds()))
	c.log.LogAttrs(r.Context(), slog.LevelInfo, "console: signed in", slog.String("remote", r.RemoteAddr))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	if v, ok := sessionOf(r.Context()); ok {
		c.sessions.delete(v.id)
	}
	c.setCookie(w, r, "", -1)
	http.Redirect(w, r, Prefix+"/sign-in", http.StatusSeeOther)
}
