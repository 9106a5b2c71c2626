// Package testkit is test support that imports no Lethe package, so that the tests of
// every package, down to keystore's, can use it: a log buffer safe for concurrent writes,
// a clock the test moves, polling with a deadline, an embedded JetStream server, and a
// self-signed certificate for TLS listeners.
//
// Only tests import it (cmd/lethe/deps_test.go refuses it to every package's own code).
// The whole running server for tests is in package lethetest, which imports this one.
package testkit
