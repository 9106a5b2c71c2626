package policy

import (
	"strings"
	"testing"
)

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestClausesQuoteThePolicy checks that every sentence of every clause is in Policy 1002
// word for word, and that Clauses keeps the policy's order.
func TestClausesQuoteThePolicy(t *testing.T) {
	t.Parallel()
	text := collapse(policy1002)
	ids := map[string]bool{}
	last := -1
	for _, c := range Clauses() {
		if i := strings.Index(text, collapse(strings.SplitAfter(c.Text, ". ")[0])); i < last {
			t.Errorf("clause %s is out of the policy's order", c.ID)
		} else {
			last = i
		}
		if c.ID == "" || ids[c.ID] {
			t.Errorf("clause id %q is empty or repeated", c.ID)
		}
		ids[c.ID] = true
		for _, s := range strings.SplitAfter(c.Text, ". ") {
			if !strings.Contains(text, collapse(s)) {
				t.Errorf("clause %s: %q is not in Policy 1002", c.ID, s)
			}
		}
	}
}

// TestEveryClauseTestedBothWays walks the Decide and Permit tables: every clause the package
// enforces has a row that checks it granting and a row that checks it refusing, and every
// row names a clause that exists.
func TestEveryClauseTestedBothWays(t *testing.T) {
	t.Parallel()
	granted, refused := map[string]int{}, map[string]int{}
	count := func(clause string, allowed bool) {
		if allowed {
			granted[clause]++
		} else {
			refused[clause]++
		}
	}
	for _, c := range decideCases(t) {
		count(c.clause, c.want != Refused)
		if c.by != "" {
			count(c.by, c.want != Refused)
		}
	}
	for _, c := range permitCases() {
		count(c.clause, c.want)
	}
	known := map[string]bool{}
	for _, c := range Clauses() {
		known[c.ID] = true
		if granted[c.ID] == 0 || refused[c.ID] == 0 {
			t.Errorf("clause %s: %d granted rows, %d refused rows, want at least one of each", c.ID, granted[c.ID], refused[c.ID])
		}
	}
	for id := range granted {
		if !known[id] {
			t.Errorf("a row names clause %q, which Clauses() does not list", id)
		}
	}
	for id := range refused {
		if !known[id] {
			t.Errorf("a row names clause %q, which Clauses() does not list", id)
		}
	}
}

// TestClausesCopies checks that a caller cannot change what decisions cite.
func TestClausesCopies(t *testing.T) {
	t.Parallel()
	cs := Clauses()
	cs[0].Text = "changed"
	if Clauses()[0].Text == "changed" {
		t.Error("Clauses() returns shared storage")
	}
}
