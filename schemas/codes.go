package schemas

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// Code classifies a domain failure. Each transport (NATS reply, SIP2, HTTP) maps codes in
// one table. Codes are wire names: append-only.
type Code string

// The error codes.
const (
	CodeInvalid     Code = "invalid"     // the request is malformed or breaks a schema or rule of form
	CodeNotFound    Code = "not_found"   // the item, card, patron or fine does not exist
	CodeConflict    Code = "conflict"    // the request does not fit the current state (item already on loan)
	CodeForbidden   Code = "forbidden"   // the requester may not do this (lost card, blocked patron, limit reached)
	CodeUnavailable Code = "unavailable" // the service cannot take the request now; retry later
	CodeInternal    Code = "internal"    // a fault inside Lethe; details are in the server log only

	// Codes of the staff HTTP API only; kiosks never see them.
	CodeUnauthenticated Code = "unauthenticated" // no valid session: log in (again)
	CodeRateLimited     Code = "rate_limited"    // too many failed logins; wait and retry
)

// Error is a coded domain error. Message is safe to show to a kiosk user or a browser: it
// never contains a patron identifier, card number, PIN, name, contact or birth date.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns a coded error. The format arguments must not carry personal data.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err: the Code of a wrapped *Error, or CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Public returns the part of err that may leave the process: the *Error it wraps, or a
// generic internal error that says nothing of the cause.
func Public(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error; the details are in the server log"}
}

// HTTPStatus is the HTTP status of a code: the one table for the staff HTTP API. Codes it
// does not know (and CodeInternal) are 500.
func HTTPStatus(c Code) int {
	switch c {
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusConflict
	case CodeForbidden:
		return http.StatusForbidden
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeUnauthenticated:
		return http.StatusUnauthorized
	case CodeRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// LogLevel is how loudly a transport logs a request that failed with err: the one table
// for the kiosk API and the staff API. A refusal by the rules (invalid, not_found,
// conflict, forbidden, rate_limited, unauthenticated) is the requester's business: debug.
// A fault is an error. Unavailable is a warning when a cause sits under it (the stream did
// not answer); a bare one (a full disk, stopped projections, a full queue) has its cause
// logged once where it arises, not once per request.
func LogLevel(err error) slog.Level {
	var e *Error
	switch {
	case !errors.As(err, &e):
		return slog.LevelError
	case e.Code == CodeInternal:
		return slog.LevelError
	case e.Code == CodeUnavailable && error(e) != err:
		return slog.LevelWarn
	}
	return slog.LevelDebug
}
