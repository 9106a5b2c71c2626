// Package lethetest runs a whole Lethe server for tests and drives it as kiosks, staff
// and intruders do: node.Start on a temporary data directory, embedded JetStream with
// fsync before every acknowledgement, Pebble on disk, the test's clock, logs captured at
// debug level.
//
// Only tests import it (cmd/lethe/deps_test.go refuses it to every package's own code).
// It imports node, which imports most of Lethe, so a package's tests use it from an
// external test package (package desk_test, not package desk): an internal test of a
// package that node imports would be an import cycle. Test support that imports no Lethe
// package, usable from every package's tests, is in package testkit.
package lethetest
