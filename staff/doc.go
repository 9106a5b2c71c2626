// Package staff is who may use the staff HTTP API: library staff accounts with a role,
// their password hashes, HTTP sessions and login rate limiting.
//
// Invariants:
//   - A password is never stored, logged, returned or put in an error. Only its argon2id
//     hash is kept, PHC-encoded with its parameters (package phc), so the parameters
//     can be raised later and old hashes still verify.
//   - Verify fails the same way, in about the same time, for an unknown name, a disabled
//     account and a wrong password.
//   - Session tokens are held only as SHA-256 digests. Sessions live in memory: a restart
//     logs everyone out.
//   - There is no default account. The first administrator is created offline with
//     `lethe staff add NAME --role administrator`.
//
// Staff account names are not patron data: logs carry them, so that the access record
// says which member of staff did what. They are never patron names, card numbers or PINs.
// A failed login's name is not logged at all: what was typed into the name field may be
// a password, or a patron's name typed into the wrong window.
package staff
