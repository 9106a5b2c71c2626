package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagineif/lethe/audit"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/tlog"
	"github.com/parquet-go/parquet-go"
)

// auditHistory makes a small history with a checkpoint in the middle: loans opened,
// returned and expunged before it, and one more loan returned and expunged after it (the
// unsigned tail). It returns the harness, the auditor's credentials and the checkpoint.
func auditHistory(t *testing.T) (*lethetest.Harness, string, schemas.CheckpointSigned) {
	t.Helper()
	h := lethetest.New(t, lethetest.WithNATSListen())
	ctx := testkit.Context(t)
	h.Register("21000000000761", "Vera Verify", "1970-07-07")
	h.Register("21000000000762", "Otto Other", "1971-08-08")
	for _, b := range []string{"V1", "V2", "V3"} {
		h.Catalog(b, 100)
	}
	h.MustCheckout("21000000000761", "V1")
	h.MustCheckout("21000000000762", "V2")
	h.Checkin("V1")
	h.ExpungeAll()
	seq, err := h.S.Checkpoint(ctx)
	if err != nil || seq == 0 {
		t.Fatalf("checkpoint: %d, %v", seq, err)
	}
	var cp schemas.CheckpointSigned
	for _, ev := range h.Events() {
		if ev.Type == schemas.TypeCheckpointSigned {
			if err := json.Unmarshal(ev.Data, &cp); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.MustCheckout("21000000000761", "V3")
	h.Checkin("V3")
	h.ExpungeAll()
	return h, h.IdentityFile(identity.Auditor, "", "ann"), cp
}

// auditRun runs lethe with args and returns stdout, stderr and the error.
func auditRun(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut testkit.SyncBuffer
	err := run(context.Background(), args, func(string) string { return "" }, nil, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestAuditVerify: the history of a running server verifies through an auditor's
// credentials and as an export; then every kind of tampering with the export is found:
// an event removed, inserted, reordered or edited, a checkpoint forged with another key,
// personal data in a field, a key that outlived its window, and a history that does not
// extend a checkpoint published earlier (a stream deleted and made again).
func TestAuditVerify(t *testing.T) {
	t.Parallel()
	h, creds, cp := auditHistory(t)
	key := h.S.VerifierKey()
	if cp.Key != key || cp.LastSeq == 0 {
		t.Fatalf("checkpoint = %+v, want one signed with %s", cp, key)
	}
	out, errOut, err := auditRun(t, "audit", "verify", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--key", key)
	if err != nil || !strings.Contains(out, "VERIFIED") {
		t.Fatalf("verify a running server: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "unsigned tail: ") || !strings.Contains(out, "(pinned)") {
		t.Errorf("the report misses the unsigned tail or the pinned key:\n%s", out)
	}
	// The latest checkpoint, as the library publishes it.
	if out, _, err := auditRun(t, "audit", "checkpoint", "--nats-url", h.S.NATSURL(), "--nats-creds", creds); err != nil || out != cp.Note {
		t.Errorf("audit checkpoint = %q, %v; want the checkpoint's note %q", out, err, cp.Note)
	}
	dir := t.TempDir()
	export := filepath.Join(dir, "history.jsonl")
	if _, errOut, err := auditRun(t, "audit", "export", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--out", export); err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	// The same history as Parquet: one row per event, kept whole, a command's several
	// events in its message's order.
	pq := filepath.Join(dir, "history.parquet")
	if _, errOut, err := auditRun(t, "audit", "export", "--format", "parquet", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--out", pq); err != nil {
		t.Fatalf("export parquet: %v\n%s", err, errOut)
	}
	rows, err := parquet.ReadFile[parquetRow](pq)
	if err != nil {
		t.Fatal(err)
	}
	jl, _ := os.ReadFile(export)
	jlLines := strings.Split(strings.TrimSpace(string(jl)), "\n")
	var want []parquetRow
	batches := 0
	for _, line := range jlLines {
		var e exportLine
		json.Unmarshal([]byte(line), &e)
		parts, err := schemas.SplitEvents(e.Data)
		if err != nil {
			t.Fatalf("export line %d: %v", e.Seq, err)
		}
		if len(parts) > 1 {
			batches++
		}
		for k, p := range parts {
			want = append(want, parquetRow{Seq: int64(e.Seq), Index: int32(k + 1), Event: string(p)})
		}
	}
	if len(rows) != len(want) || batches == 0 {
		t.Fatalf("parquet has %d rows, the JSON lines' messages hold %d events (%d batches)", len(rows), len(want), batches)
	}
	for i, r := range rows {
		if w := want[i]; r.Seq != w.Seq || r.Index != w.Index || r.Event != w.Event || r.Type == "" || r.Time.IsZero() {
			t.Fatalf("parquet row %d = %+v, want event %d of sequence %d", i, r, w.Index, w.Seq)
		}
	}
	published := filepath.Join(dir, "checkpoint.note")
	os.WriteFile(published, []byte(cp.Note), 0o600)
	verify := func(lines []string, extra ...string) (string, error) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "x.jsonl")
		os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		out, _, err := auditRun(t, append([]string{"audit", "verify", "--file", f, "--key", key, "--checkpoint", published}, extra...)...)
		return out, err
	}
	// One event proved against the latest checkpoint, checked with the key; edited, it
	// fails.
	proofOut, _, err := auditRun(t, "audit", "prove", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "3")
	if err != nil {
		t.Fatalf("audit prove 3: %v", err)
	}
	proofFile := filepath.Join(dir, "proof.json")
	os.WriteFile(proofFile, []byte(proofOut), 0o600)
	if out, _, err := auditRun(t, "audit", "verify", "--proof", proofFile, "--key", key); err != nil || !strings.Contains(out, "VERIFIED: event 3") {
		t.Errorf("verify --proof: %v\n%s", err, out)
	}
	var p eventProof
	if err := json.Unmarshal([]byte(proofOut), &p); err != nil || p.Index != 2 {
		t.Fatalf("proof = %s, %v", proofOut, err)
	}
	for what, edit := range map[string]func(*eventProof){
		"another event": func(p *eventProof) { p.Event = bytes.Replace(p.Event, []byte(`"main"`), []byte(`"east"`), 1) },
		"another index": func(p *eventProof) { p.Index = 1 },
	} {
		q := p
		q.Event = append([]byte(nil), p.Event...)
		edit(&q)
		b, _ := json.Marshal(q)
		os.WriteFile(proofFile, b, 0o600)
		if _, _, err := auditRun(t, "audit", "verify", "--proof", proofFile, "--key", key); exitCode(err) != 1 {
			t.Errorf("verify --proof with %s: %v, want exit 1", what, err)
		}
	}
	if _, _, err := auditRun(t, "audit", "prove", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, fmt.Sprint(cp.LastSeq+3)); err == nil {
		t.Error("a proof of an event after the last checkpoint")
	}
	// A range, with the Merkle prefix of what comes before it, continued to the checkpoint
	// that signs it: verifies alone; edited, or with another prefix, it does not.
	rangeFile := filepath.Join(dir, "range.jsonl")
	if _, errOut, err := auditRun(t, "audit", "export", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--from", "5", "--to", "8", "--out", rangeFile); err != nil {
		t.Fatalf("export a range: %v\n%s", err, errOut)
	}
	rng, _ := os.ReadFile(rangeFile)
	rangeLines := strings.Split(strings.TrimSpace(string(rng)), "\n")
	if want := int(cp.LastSeq+1) - 5 + 1 + 1; len(rangeLines) != want { // header + 5..checkpoint
		t.Fatalf("the range has %d lines, want %d (a header and sequences 5 to %d)", len(rangeLines), want, cp.LastSeq+1)
	}
	rangeVerify := func(lines []string) (string, error) {
		f := filepath.Join(t.TempDir(), "r.jsonl")
		os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		out, _, err := auditRun(t, "audit", "verify", "--file", f, "--key", key)
		return out, err
	}
	if out, err := rangeVerify(rangeLines); err != nil || !strings.Contains(out, "VERIFIED") {
		t.Errorf("a range with its prefix: %v\n%s", err, out)
	}
	if out, err := rangeVerify(editWhere(t, rangeLines, `"lethe/`, `"lethe/x`)); exitCode(err) != 1 || !strings.Contains(out, "root differs") {
		t.Errorf("an edited range: %v\n%s", err, out)
	}
	if out, err := rangeVerify(rangeLines[1:]); exitCode(err) != 1 || !strings.Contains(out, "starts at sequence 5") {
		t.Errorf("a range without its prefix: %v\n%s", err, out)
	}
	// Stats of the export: three loans, too few to show with k = 5, and shown with k = 2.
	if out, _, err := auditRun(t, "audit", "stats", "--file", export, "--timezone", "UTC"); err != nil || !strings.Contains(out, "loans <5") {
		t.Errorf("audit stats --k 5 = %v:\n%s", err, out)
	}
	if out, _, err := auditRun(t, "audit", "stats", "--file", export, "--k", "2", "--timezone", "UTC"); err != nil || !strings.Contains(out, "loans 3,") {
		t.Errorf("audit stats --k 2 = %v:\n%s", err, out)
	}
	raw, _ := os.ReadFile(export)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if out, err := verify(lines); err != nil {
		t.Fatalf("the export does not verify: %v\n%s", err, out)
	}
	// JSON report.
	if out, err := verify(lines, "--json"); err != nil || !json.Valid([]byte(out)) || !strings.Contains(out, `"ok": true`) {
		t.Errorf("--json: %v\n%s", err, out)
	}

	at := int(cp.LastSeq) - 2 // an event the checkpoint covers
	edit := func(i int, from, to string) []string {
		t.Helper()
		c := append([]string(nil), lines...)
		if !strings.Contains(c[i], from) {
			t.Fatalf("line %d has no %q: %s", i, from, c[i])
		}
		c[i] = strings.Replace(c[i], from, to, 1)
		return c
	}
	var cpLine int
	for i, l := range lines {
		if strings.Contains(l, schemas.TypeCheckpointSigned) {
			cpLine = i
		}
	}
	other, _ := tlog.NewSigner(bytes.Repeat([]byte{42}, 32))
	forgedNote, _ := other.Sign(cp.Size, cp.Root)
	forged := append([]string(nil), lines...)
	forged[cpLine] = strings.Replace(strings.Replace(forged[cpLine], jsonString(cp.Note), jsonString(string(forgedNote)), 1), cp.Key, other.VerifierKey(), 1)

	// The last event: the tail's transaction.expunged.
	last := len(lines) - 1
	var expunged struct {
		Data schemas.Event `json:"data"`
	}
	json.Unmarshal([]byte(lines[last]), &expunged)
	if expunged.Data.Type != schemas.TypeTransactionExpunged {
		t.Fatalf("the last event is %s, want the tail's expunge", expunged.Data.Type)
	}
	late := edit(last, `"key_destroyed_at":"`, `"key_destroyed_at":"2099-`)
	late[last] = fixYear(late[last])

	cases := []struct {
		name  string
		lines []string
		want  []string // in the report
	}{
		{"removed", append(append([]string(nil), lines[:at]...), lines[at+1:]...), []string{"completeness", "is missing", "integrity"}},
		{"inserted", append(append(append([]string(nil), lines[:at]...), lines[at]), lines[at:]...), []string{"completeness", "out of order or repeated"}},
		{"reordered", swap(lines, at-1, at), []string{"completeness", "integrity"}},
		{"edited", edit(at, `"lethe/`, `"lethe/x`), []string{"integrity", "root differs"}},
		{"forged checkpoint", forged, []string{"integrity", "signed with key"}},
		{"personal data", editWhere(t, lines, `"title":"Title V2`, `"title":"Title V2 ann@example.org`), []string{"personal data", "e-mail address at /title"}},
		{"late expunge", late, []string{"forgetting", "beyond the window"}},
		{"cut short", lines[:cpLine-1], []string{"fewer than the published checkpoint"}},
	}
	for _, c := range cases {
		out, err := verify(c.lines)
		if err == nil || exitCode(err) != 1 {
			t.Errorf("%s: verify = %v, want exit 1\n%s", c.name, err, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the report does not say %q:\n%s", c.name, w, out)
			}
		}
		if !strings.Contains(out, "FAILED") {
			t.Errorf("%s: no FAILED verdict:\n%s", c.name, out)
		}
	}

	// A stream deleted and made again: another library's history does not extend the
	// checkpoint this one published.
	h2, creds2, _ := auditHistory(t)
	if out, _, err := auditRun(t, "audit", "verify", "--nats-url", h2.S.NATSURL(), "--nats-creds", creds2, "--key", key, "--checkpoint", published); exitCode(err) != 1 ||
		!strings.Contains(out, "does not extend the published checkpoint") && !strings.Contains(out, "signed with key") {
		t.Errorf("another history against this one's checkpoint: %v\n%s", err, out)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

func swap(lines []string, i, j int) []string {
	c := append([]string(nil), lines...)
	c[i], c[j] = c[j], c[i]
	return c
}

// fixYear turns the "2099-2026-…" a blunt edit made back into a valid time in 2099.
func fixYear(line string) string {
	i := strings.Index(line, `"key_destroyed_at":"2099-`)
	j := i + len(`"key_destroyed_at":"2099-`)
	return line[:j-5] + "2099" + line[j+4:]
}

// editWhere replaces from with to in the one line that holds from.
func editWhere(t *testing.T, lines []string, from, to string) []string {
	t.Helper()
	c := append([]string(nil), lines...)
	for i, l := range c {
		if strings.Contains(l, from) {
			c[i] = strings.Replace(l, from, to, 1)
			return c
		}
	}
	t.Fatalf("no line holds %q", from)
	return nil
}

// TestAuditVerifyDamagedFiles damages the stream's file of a stopped server (cut short,
// or bytes flipped in the middle) and verifies its data directory: each is found.
func TestAuditVerifyDamagedFiles(t *testing.T) {
	t.Parallel()
	for _, damage := range []string{"truncate", "flip"} {
		t.Run(damage, func(t *testing.T) {
			t.Parallel()
			h, _, cp := auditHistory(t)
			key := h.S.VerifierKey()
			published := filepath.Join(t.TempDir(), "checkpoint.note")
			os.WriteFile(published, []byte(cp.Note), 0o600)
			data := h.Cfg.Data
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
			if out, _, err := auditRun(t, "audit", "pubkey", "--data", data); err != nil || strings.TrimSpace(out) != key {
				t.Errorf("audit pubkey = %q, %v; want %s", out, err, key)
			}
			if out, _, err := auditRun(t, "audit", "verify", "--data", data, "--key", key, "--checkpoint", published); err != nil {
				t.Fatalf("the undamaged directory: %v\n%s", err, out)
			}
			blks, _ := filepath.Glob(filepath.Join(data, "nats", "jetstream", "*", "streams", "CIRC", "msgs", "*.blk"))
			if len(blks) == 0 {
				t.Fatal("no block file of CIRC")
			}
			b, err := os.ReadFile(blks[0])
			if err != nil {
				t.Fatal(err)
			}
			switch damage {
			case "truncate":
				b = b[:len(b)/2]
			case "flip":
				for i := len(b) / 3; i < len(b)/3+4; i++ {
					b[i] ^= 0xff
				}
			}
			if err := os.WriteFile(blks[0], b, 0o600); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := auditRun(t, "audit", "verify", "--data", data, "--key", key, "--checkpoint", published)
			if exitCode(err) != 1 || !strings.Contains(out, "FAILED") {
				t.Errorf("verify after %s: %v\n%s%s", damage, err, out, errOut)
			}
			t.Logf("%s:\n%s", damage, out)
		})
	}
}

// TestCheckpointKeyRotation: the checkpoint key is rotated on a stopped server; the
// history verifies with the first key pinned, following the rotation the old key signed;
// a rotation signed by another key is refused; a rotation staged but never announced (a
// crash before the announcement) is dropped at the next start.
func TestCheckpointKeyRotation(t *testing.T) {
	t.Parallel()
	h, creds, _ := auditHistory(t)
	first := h.S.VerifierKey()
	data := h.Cfg.Data
	h.Offline(func() {
		out, errOut, err := auditRun(t, "keys", "rotate-checkpoint", "--data", data)
		if err != nil || !strings.Contains(out, "checkpoints are now signed by") {
			t.Fatalf("rotate-checkpoint: %v\n%s%s", err, out, errOut)
		}
	})
	second := h.S.VerifierKey()
	if second == first {
		t.Fatal("the checkpoint key did not change")
	}
	h.MustCheckout("21000000000762", "V1")
	if _, err := h.S.Checkpoint(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	out, _, err := auditRun(t, "audit", "verify", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--key", first)
	if err != nil || !strings.Contains(out, "after 1 rotations") || !strings.Contains(out, "VERIFIED") {
		t.Fatalf("verify across the rotation: %v\n%s", err, out)
	}
	// A rotation only another key signed: the checkpoints after it do not verify.
	other, _ := tlog.NewSigner(bytes.Repeat([]byte{5}, 32))
	forged, _ := other.SignRotation(other.VerifierKey())
	if err := h.S.Ledger.AppendKeyRotation(testkit.Context(t), schemas.CheckpointKeyRotated{Key: other.VerifierKey(), Note: string(forged)}); err != nil {
		t.Fatal(err)
	}
	if out, _, err := auditRun(t, "audit", "verify", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--key", first); exitCode(err) != 1 ||
		!strings.Contains(out, "not signed by the key in force") {
		t.Errorf("a forged rotation: %v\n%s", err, out)
	}
	// Staged, never announced: dropped at the start, the key in force unchanged.
	h.Offline(func() {
		m, err := keystore.LoadMaster(filepath.Join(data, "master.key"), "")
		if err != nil {
			t.Fatal(err)
		}
		ks, err := keystore.Open(filepath.Join(data, "keystore"), m, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.StageCheckpointSeed(bytes.Repeat([]byte{6}, 32)); err != nil {
			t.Fatal(err)
		}
		ks.Close()
	})
	if h.S.VerifierKey() != second {
		t.Errorf("after a staged, unannounced rotation the key is %s, want %s", h.S.VerifierKey(), second)
	}
	if _, staged, _ := h.S.Keys.StagedCheckpointSeed(); staged {
		t.Error("the unannounced key is still staged")
	}
}

// TestAuditVerifyContactUpdate: a history with changes of contact details verifies with
// an auditor's credentials: patron.contact_updated passes its schema, and its sealed
// change and profile are not taken for personal data. The same change in the clear, as the
// negative control, is found.
func TestAuditVerifyContactUpdate(t *testing.T) {
	t.Parallel()
	h := lethetest.New(t, lethetest.WithNATSListen())
	const email, phone = "cleo@contact.example.org", "406-555-0147"
	id := h.RegisterMinor("21000000000763", "Cleo Contact", h.Clock.Now().AddDate(-8, 0, 0).Format(time.DateOnly), "Cal Contact")
	for _, c := range []schemas.ContactChange{
		{Email: email, Phone: phone},
		{CaregiverContact: phone, Clear: []string{schemas.ContactEmail}},
	} {
		lethetest.MustDesk[schemas.Accepted](h, schemas.CmdUpdateContact, schemas.UpdateContact{CommandID: lethetest.CmdID(), PatronID: id, ContactChange: c})
	}
	if _, err := h.S.Checkpoint(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	creds := h.IdentityFile(identity.Auditor, "", "ann")
	out, errOut, err := auditRun(t, "audit", "verify", "--nats-url", h.S.NATSURL(), "--nats-creds", creds, "--key", h.S.VerifierKey())
	if err != nil || !strings.Contains(out, "VERIFIED") || !strings.Contains(out, "no personal data found") {
		t.Fatalf("verify a history with contact updates: %v\n%s%s", err, out, errOut)
	}
	n := 0
	for _, ev := range h.Events() {
		if ev.Type != schemas.TypePatronContactUpdated {
			continue
		}
		n++
		if found := audit.Detect(ev.Data); len(found) != 0 {
			t.Errorf("a contact update's sealed data taken for personal data: %+v", found)
		}
		var d map[string]any
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		d["contact"] = map[string]any{"email": email, "phone": phone}
		plain, _ := json.Marshal(d)
		if found := audit.Detect(plain); len(found) != 2 {
			t.Errorf("the change in the clear: found %+v, want the e-mail address and the phone number", found)
		}
	}
	if n != 2 {
		t.Errorf("%d contact updates on the stream, want 2", n)
	}
}
