package desk

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/imagineif/lethe/schemas"
)

// What every request passes before its route: the response headers that keep the API out
// of other sites' frames, the cross-origin check, and the one limit on request bodies.

// MaxBodyBytes is the largest request body on any route: the largest command. Larger
// bodies are refused before any handler runs.
const MaxBodyBytes = schemas.MaxCommandBytes

// hstsMaxAge is a year: a browser that once reached the API over TLS keeps to TLS. No
// includeSubDomains: other hosts of the library's domain are not Lethe's to decide.
const hstsMaxAge = "max-age=31536000"

var (
	errBodyTooLarge = schemas.Errorf(schemas.CodeInvalid, "body too large: at most %d bytes", MaxBodyBytes)
	errBodyUnread   = schemas.Errorf(schemas.CodeInvalid, "the request body could not be read")
	errCrossOrigin  = schemas.Errorf(schemas.CodeForbidden, "cross-origin request refused: a page on another site cannot send this request")
)

// secureHeaders sets, on every response, the headers that forbid framing the API (the
// dashboard's buttons must not be clickjacked), and HSTS under TLS. A handler may replace
// the Content-Security-Policy with its own, which must keep frame-ancestors 'none'.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY") // for browsers without CSP frame-ancestors
		h.Set("X-Content-Type-Options", "nosniff")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", hstsMaxAge)
		}
		next.ServeHTTP(w, r)
	})
}

// crossOrigin refuses state-changing requests that a browser says come from another site
// (CSRF), even on loopback, with the API's JSON error instead of Go's plain text.
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, errCrossOrigin)
	}))
	return p.Handler(next)
}

// limitBody reads the request body, refusing one over MaxBodyBytes, before next runs:
// handlers then read a body that is whole and bounded, and none needs its own limit.
//
// A route with a limit of its own (limits, by pattern of mux) is the exception: its body
// is refused here only if its length says it is too large, and is otherwise left unread,
// bounded by its limit, for the route to read once the session and role are checked. A
// larger limit on a body read before those checks would let anyone without an account
// make the server hold that much per connection.
func (s *Server) limitBody(mux *http.ServeMux, limits map[string]int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			mux.ServeHTTP(w, r)
			return
		}
		if _, pattern := mux.Handler(r); limits[pattern] != 0 {
			limit := limits[pattern]
			if r.ContentLength > limit {
				s.fail(w, r, routeBodyTooLarge(limit))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			mux.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > MaxBodyBytes {
			s.fail(w, r, errBodyTooLarge) // said so up front: not worth reading
			return
		}
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.fail(w, r, errBodyTooLarge)
			return
		}
		if err != nil {
			s.fail(w, r, errBodyUnread)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(raw))
		mux.ServeHTTP(w, r)
	})
}

// routeBodyTooLarge refuses a body over a route's own limit, in the words of
// errBodyTooLarge.
func routeBodyTooLarge(limit int64) error {
	return schemas.Errorf(schemas.CodeInvalid, "body too large: at most %d bytes on this route", limit)
}
