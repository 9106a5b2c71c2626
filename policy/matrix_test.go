package policy

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"text/tabwriter"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestDecisionMatrix writes every case the tests decide (TestDecide's table and the whole
// role × action permission table) as a text a librarian or a lawyer can review, and checks
// it against testdata/matrix.txt. A change to the policy's decisions shows as a change to
// that file: regenerate it with `go test ./policy -run TestDecisionMatrix -update` and
// read the diff.
func TestDecisionMatrix(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	b.WriteString("# Policy 1002 as Lethe decides it: every case the tests check.\n")
	b.WriteString("# Regenerate: go test ./policy -run TestDecisionMatrix -update\n\n")
	b.WriteString("## Disclosures (policy.Decide)\n\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tROLE\tBASIS\tSCOPE\tCLAUSE\tREASON")
	for _, c := range decideCases(t) {
		d := Decide(c.req)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.name, c.req.Role, c.req.Basis, d.Scope, d.Clause.ID, d.Reason)
	}
	tw.Flush()
	b.WriteString("\n## Desk and kiosk actions (policy.Permit)\n\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tACTION\tALLOWED\tCLAUSE\tREASON")
	for _, c := range permitCases() {
		d := Permit(c.role, c.action)
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", c.role, c.action, d.Allowed(), d.Clause.ID, d.Reason)
	}
	tw.Flush()
	golden := filepath.Join("testdata", "matrix.txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("the decisions differ from %s: run `go test ./policy -run TestDecisionMatrix -update` and review the diff", golden)
	}
}
