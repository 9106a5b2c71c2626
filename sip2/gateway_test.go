package sip2_test

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts in testdata")

// client is a self-check machine written from the SIP2 2.00 specification, not from the
// gateway's encoder: it appends AY and AZ itself, checks every reply's checksum, and reads
// fields by the spec's fixed widths.
type client struct {
	t        testing.TB
	c        net.Conn
	r        *bufio.Reader
	seq      int
	checksum bool
	log      *strings.Builder // the transcript, when kept
	last     string           // the last reply
}

func dial(t testing.TB, addr string, checksum bool) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c), checksum: checksum}
}

// specChecksum: "the checksum is the binary sum of the characters [through AZ], the
// 2's complement of which is [sent] as 4 hex digits".
func specChecksum(s string) string {
	sum := 0
	for i := 0; i < len(s); i++ {
		sum += int(s[i])
	}
	return fmt.Sprintf("%04X", (^sum+1)&0xFFFF)
}

// frame adds the error detection fields when the client uses them.
func (c *client) frame(msg string) string {
	if !c.checksum {
		return msg
	}
	msg += fmt.Sprintf("AY%dAZ", c.seq%10)
	return msg + specChecksum(msg)
}

// raw sends bytes as they are and returns the reply without its terminator.
func (c *client) raw(b string) string {
	c.t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.c.Write([]byte(b + "\r")); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	line, err := c.r.ReadString('\r')
	if err != nil {
		c.t.Fatalf("read reply to %.2s: %v", b, err)
	}
	reply := strings.TrimSuffix(line, "\r")
	c.last = reply
	if c.log != nil {
		fmt.Fprintf(c.log, "> %s\n< %s\n", b, reply)
	}
	return reply
}

// send sends one message with the next sequence number and checks the reply's error
// detection fields: the same AY, and a checksum that sums to zero.
func (c *client) send(msg string) string {
	c.t.Helper()
	c.seq++
	reply := c.raw(c.frame(msg))
	if !c.checksum {
		if strings.Contains(reply, "AZ") && regexp.MustCompile(`AY\dAZ[0-9A-F]{4}$`).MatchString(reply) {
			c.t.Errorf("reply %q carries error detection the request did not", reply)
		}
		return reply
	}
	n := len(reply)
	if n < 9 || reply[n-9:n-7] != "AY" || reply[n-6:n-4] != "AZ" {
		c.t.Fatalf("reply %q has no AY/AZ", reply)
	}
	if got := reply[n-7 : n-6]; got != fmt.Sprint(c.seq%10) {
		c.t.Errorf("reply AY%s, want AY%d", got, c.seq%10)
	}
	if want := specChecksum(reply[:n-4]); reply[n-4:] != want {
		c.t.Errorf("reply checksum %s, want %s", reply[n-4:], want)
	}
	return reply[:n-9]
}

// reply is a reply read by the spec's layout.
type reply struct {
	id, fixed string
	fields    map[string][]string
}

// widths of the fixed parts of the responses, from the spec.
var widths = map[string]int{
	"94": 1, "98": 1 + 1 + 1 + 1 + 1 + 1 + 3 + 3 + 18 + 4, "24": 14 + 3 + 18, "64": 14 + 3 + 18 + 6*4,
	"12": 4 + 18, "10": 4 + 18, "30": 4 + 18, "66": 1 + 4 + 4 + 18, "18": 2 + 2 + 2 + 18, "38": 1 + 18,
	"36": 1 + 18, "96": 0, "16": 2 + 18, "20": 1 + 18, "26": 14 + 3 + 18,
}

func parse(t testing.TB, s string) reply {
	t.Helper()
	if len(s) < 2 {
		t.Fatalf("reply %q too short", s)
	}
	r := reply{id: s[:2], fields: map[string][]string{}}
	w, ok := widths[r.id]
	if !ok || len(s) < 2+w {
		t.Fatalf("reply %q: unknown id or short fixed part", s)
	}
	r.fixed = s[2 : 2+w]
	for _, f := range strings.Split(s[2+w:], "|") {
		if len(f) >= 2 {
			r.fields[f[:2]] = append(r.fields[f[:2]], f[2:])
		}
	}
	return r
}

func (r reply) get(code string) string {
	if v := r.fields[code]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// want checks a reply's id and fixed characters at positions (0-based in the fixed part).
func (r reply) want(t testing.TB, id string, at map[int]string) {
	t.Helper()
	if r.id != id {
		t.Fatalf("reply id %s (%q), want %s", r.id, r.fixed, id)
	}
	for pos, v := range at {
		if got := r.fixed[pos : pos+len(v)]; got != v {
			t.Errorf("reply %s fixed[%d:] = %q, want %q (fixed %q, fields %v)", id, pos, got, v, r.fixed, r.fields)
		}
	}
}

const epoch = "20300101   Z090000" // the transaction date the tests send

func date(t time.Time) string { return t.UTC().Format("20060102") + "   Z" + t.UTC().Format("150405") }

// start is a server at a fixed time, with an item and a patron whose name and card are
// markers for the privacy scans.
func start(t *testing.T, payments bool, opts ...lethetest.Option) *lethetest.Harness {
	h := lethetest.New(t, append([]lethetest.Option{lethetest.WithSIP2(payments)}, opts...)...)
	h.Clock.Set(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
	h.Catalog("30000001", 2500)
	h.Catalog("30000002", 2500)
	h.Catalog("30000003", 2500)
	h.Register(card, "Zebulon Quixote", "1980-05-17")
	return h
}

const card = "21000000999777"

func login(t *testing.T, h *lethetest.Harness, c *client, user, pw string) {
	t.Helper()
	parse(t, c.send("9300CN"+user+"|CO"+pw+"|CPmain|")).want(t, "94", map[int]string{0: "1"})
}

// TestSessionEveryMessage runs every message through one session, with checksums on and
// off, compares fixed positions and fields, and keeps the transcripts as golden files.
func TestSessionEveryMessage(t *testing.T) {
	h := start(t, true)
	user, pw := h.SIP2Kiosk("main", "sip1")
	for _, checksum := range []bool{true, false} {
		name := map[bool]string{true: "checksums", false: "plain"}[checksum]
		t.Run(name, func(t *testing.T) {
			c := dial(t, h.SIP2Addr(), checksum)
			c.log = &strings.Builder{}
			fmt.Fprintf(c.log, "# the kiosk's SIP2 user id and password are shown as USER and PASSWORD\n")
			c.seq++
			hidden := c.frame("9300CNUSER|COPASSWORD|CPmain|")
			real := c.frame("9300CN" + user + "|CO" + pw + "|CPmain|")
			logged := c.log
			c.log = nil
			r := parse(t, strings.TrimSuffix(c.raw(real), map[bool]string{true: "", false: ""}[checksum]))
			c.log = logged
			if !strings.HasPrefix(r.id+r.fixed, "941") {
				t.Fatalf("login = %s%s, want 941", r.id, r.fixed)
			}
			fmt.Fprintf(c.log, "> %s (its AZ here is of this text; the real one differs)\n< %s\n", hidden, c.last)

			r = parse(t, c.send("9900302.00"))
			r.want(t, "98", map[int]string{0: "YYYY", 4: "N", 5: "Y", 6: "300003", 30: "2.00"})
			if bx := r.get("BX"); bx != "YYYNYYYYYYYNNNYY" {
				t.Errorf("BX = %q, want the messages answered", bx)
			}

			r = parse(t, c.send("23000"+epoch+"AOlethe|AA"+card+"|AC|"))
			r.want(t, "24", map[int]string{0: "              ", 14: "000"})
			if r.get("BL") != "Y" || r.get("AE") != "" || r.get("BV") != "0.00" {
				t.Errorf("24 fields %v", r.fields)
			}

			r = parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000001|AC|"))
			r.want(t, "12", map[int]string{0: "1NUY"})
			due := date(h.Clock.Now().Add(21 * 24 * time.Hour))
			if r.get("AH") != due || r.get("AJ") != "Title 30000001" || r.get("AB") != "30000001" {
				t.Errorf("12 fields %v, want due %s", r.fields, due)
			}

			r = parse(t, c.send("17"+epoch+"AOlethe|AB30000001|"))
			r.want(t, "18", map[int]string{0: "04", 2: "00", 4: "01"})
			if r.get("AH") != due || r.get("AJ") != "Title 30000001" || r.get("AA") != "" {
				t.Errorf("18 fields %v", r.fields)
			}

			r = parse(t, c.send("63000"+epoch+"  Y       AOlethe|AA"+card+"|BP1|BQ5|"))
			r.want(t, "64", map[int]string{0: "              ", 35: "0000", 39: "0000", 43: "0001", 47: "0000"})
			if got := r.fields["AU"]; len(got) != 1 || got[0] != "30000001" {
				t.Errorf("64 AU = %v, want the one loan", got)
			}

			r = parse(t, c.send("29NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000001|"))
			r.want(t, "30", map[int]string{0: "1YUN"})
			if r.get("AH") != due { // renewed on the day it was lent: the same due
				t.Errorf("30 AH = %q, want %s", r.get("AH"), due)
			}

			r = parse(t, c.send("65"+epoch+"AOlethe|AA"+card+"|"))
			r.want(t, "66", map[int]string{0: "100010000"})
			if r.get("BM") != "30000001" {
				t.Errorf("66 BM = %v", r.fields)
			}

			r = parse(t, c.send("09N"+epoch+strings.Repeat(" ", 18)+"AOlethe|AB30000001|AC|"))
			r.want(t, "10", map[int]string{0: "1YUN"})
			if r.get("AA") != "" || r.get("AQ") != "main" {
				t.Errorf("10 fields %v: never the borrower", r.fields)
			}

			r = parse(t, c.send("37"+epoch+"0100USD"+"BV1.00|AOlethe|AA"+card+"|BKtx1|"))
			r.want(t, "38", map[int]string{0: "N"}) // no fine to pay
			if r.get("BK") != "tx1" || r.get("AF") == "" {
				t.Errorf("38 fields %v", r.fields)
			}

			parse(t, c.send("15+"+epoch+"AOlethe|AA"+card+"|AB30000001|")).want(t, "16", map[int]string{0: "0N"})
			parse(t, c.send("35"+epoch+"AOlethe|AA"+card+"|")).want(t, "36", map[int]string{0: "Y"})

			golden(t, "session-"+name+".txt", c.log.String())
		})
	}
}

// golden compares a transcript with testdata/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("transcript differs from %s (-update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestBadChecksumThenResend: a corrupted checkout is answered 96 and changes nothing; the
// resend is applied once; the same sequence number and message again is answered, not
// applied again; 97 gets the last reply again.
func TestBadChecksumThenResend(t *testing.T) {
	h := start(t, false)
	user, pw := h.SIP2Kiosk("main", "sip1")
	c := dial(t, h.SIP2Addr(), true)
	login(t, h, c, user, pw)
	before := h.StreamLast()

	c.seq++
	good := c.frame("11NN" + epoch + strings.Repeat(" ", 18) + "AOlethe|AA" + card + "|AB30000001|AC|")
	bad := good[:len(good)-1] + map[bool]string{true: "0", false: "1"}[good[len(good)-1] == '1']
	if r := c.raw(bad); !strings.HasPrefix(r, "96") {
		t.Fatalf("bad checksum answered %q, want 96", r)
	}
	if got := h.StreamLast(); got != before {
		t.Fatalf("a message with a bad checksum appended %d events", got-before)
	}
	first := c.raw(good)
	parse(t, first).want(t, "12", map[int]string{0: "1"})
	again := c.raw(good)
	parse(t, again).want(t, "12", map[int]string{0: "1"})
	if n := lethetest.CountType(h.Events(), schemas.TypeItemCheckedOut); n != 1 {
		t.Errorf("%d checked_out events after a resend and a replay, want 1", n)
	}
	if r := c.raw("97AZ" + specChecksum("97AZ")); r != again {
		t.Errorf("97 answered %q, want the last reply %q", r, again)
	}
}

// TestOfflineCheckinIsALateReturn: a return sent days late with its original return date
// ends the loan then, with the fine counted to then.
func TestOfflineCheckinIsALateReturn(t *testing.T) {
	h := start(t, true)
	user, pw := h.SIP2Kiosk("main", "sip1")
	c := dial(t, h.SIP2Addr(), true)
	login(t, h, c, user, pw)
	lent := h.Clock.Now()
	parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000001|")).want(t, "12", map[int]string{0: "1"})
	back := lent.Add(25 * 24 * time.Hour) // four days late (21-day loans)
	h.Clock.Set(lent.Add(40 * 24 * time.Hour))
	r := parse(t, c.send("09Y"+date(h.Clock.Now())+date(back)+"AOlethe|AB30000001|"))
	r.want(t, "10", map[int]string{0: "1YUY"})
	if af := strings.Join(r.fields["AF"], " "); !strings.Contains(af, "1.00") {
		t.Errorf("10 AF = %q, want the fine of four days (1.00)", af)
	}
	var returned bool
	for _, ev := range h.Events() {
		if ev.Type == schemas.TypeItemReturned {
			returned = true
			if !ev.Time.Equal(back) {
				t.Errorf("item.returned at %v, want the offline return date %v", ev.Time, back)
			}
		}
	}
	if !returned {
		t.Fatal("no item.returned event")
	}

	// The fine, listed by patron information with its id, is paid at the terminal.
	r = parse(t, c.send("63000"+epoch+"   Y      AOlethe|AA"+card+"|"))
	r.want(t, "64", map[int]string{47: "0001"})
	fines := r.fields["AV"]
	if len(fines) != 1 || !strings.Contains(fines[0], " 1.00 overdue") {
		t.Fatalf("64 AV = %q, want the overdue fine of 1.00", fines)
	}
	fineID, _, _ := strings.Cut(fines[0], " ")
	parse(t, c.send("37"+epoch+"0100EUR"+"BV1.00|AOlethe|AA"+card+"|CG"+fineID+"|")).want(t, "38", map[int]string{0: "N"})
	parse(t, c.send("37"+epoch+"0100USD"+"BV1.00|AOlethe|AA"+card+"|CG"+fineID+"|")).want(t, "38", map[int]string{0: "Y"})
	if n := lethetest.CountType(h.Events(), schemas.TypeFinePaid); n != 1 {
		t.Errorf("%d fine.paid events, want 1", n)
	}
	r = parse(t, c.send("23000"+epoch+"AOlethe|AA"+card+"|"))
	if r.get("BV") != "0.00" {
		t.Errorf("owed after paying: BV %q, want 0.00", r.get("BV"))
	}
}

// TestOfflineCheckoutAndCheckin: a machine back online sends a checkout it made offline
// (no block Y, its transaction date) and the return it made offline (its return date): the
// loan runs from the checkout's date, and the return, earlier than the moment the
// checkout arrived, ends it on time.
func TestOfflineCheckoutAndCheckin(t *testing.T) {
	h := start(t, false)
	user, pw := h.SIP2Kiosk("main", "sip1")
	c := dial(t, h.SIP2Addr(), true)
	login(t, h, c, user, pw)
	out := h.Clock.Now().Add(-5 * 24 * time.Hour)
	back := out.Add(3 * 24 * time.Hour)
	r := parse(t, c.send("11NY"+date(out)+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000003|"))
	r.want(t, "12", map[int]string{0: "1"})
	if want := date(out.Add(21 * 24 * time.Hour)); r.get("AH") != want {
		t.Errorf("offline checkout due %s, want %s", r.get("AH"), want)
	}
	parse(t, c.send("09Y"+date(h.Clock.Now())+date(back)+"AOlethe|AB30000003|")).want(t, "10", map[int]string{0: "1YUN"})
	for _, ev := range h.Events() {
		switch ev.Type {
		case schemas.TypeItemCheckedOut:
			if !ev.Time.Equal(out) {
				t.Errorf("checked_out at %v, want the offline transaction date %v", ev.Time, out)
			}
		case schemas.TypeItemReturned:
			if !ev.Time.Equal(back) {
				t.Errorf("returned at %v, want the offline return date %v", ev.Time, back)
			}
		case schemas.TypeFineAssessed:
			t.Error("an on-time offline return was fined")
		}
	}
	// Online (no block N), the transaction date is not the loan's start: now is.
	r = parse(t, c.send("11NN"+date(out)+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000003|"))
	if want := date(h.Clock.Now().Add(21 * 24 * time.Hour)); r.get("AH") != want {
		t.Errorf("online checkout due %s, want %s", r.get("AH"), want)
	}
	// A date that is not one is refused, and changes nothing.
	before := h.StreamLast()
	parse(t, c.send("09N"+date(h.Clock.Now())+"2030XX01   Z090000"+"AOlethe|AB30000003|")).want(t, "10", map[int]string{0: "0"})
	if h.StreamLast() != before {
		t.Error("a checkin with a bad return date appended events")
	}
}

// TestLostCardRefusedAtOnce: a card reported lost at the desk is refused by 24, 64 and
// 12 from that moment.
func TestLostCardRefusedAtOnce(t *testing.T) {
	h := start(t, false)
	user, pw := h.SIP2Kiosk("main", "sip1")
	c := dial(t, h.SIP2Addr(), true)
	login(t, h, c, user, pw)
	parse(t, c.send("23000"+epoch+"AOlethe|AA"+card+"|")).want(t, "24", map[int]string{0: "  "})
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdReportCardLost, schemas.ReportCardLost{CommandID: lethetest.CmdID(), Card: card})
	before := h.StreamLast()
	r := parse(t, c.send("23000"+epoch+"AOlethe|AA"+card+"|"))
	r.want(t, "24", map[int]string{0: "YY", 4: "Y"})
	if r.get("BL") != "N" || r.get("BV") != "" {
		t.Errorf("24 of a lost card: %v", r.fields)
	}
	r = parse(t, c.send("63000"+epoch+"  Y       AOlethe|AA"+card+"|"))
	r.want(t, "64", map[int]string{0: "YY", 4: "Y"})
	if len(r.fields["AU"]) != 0 || r.get("BL") != "N" {
		t.Errorf("64 of a lost card: %v", r.fields)
	}
	parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000001|")).want(t, "12", map[int]string{0: "0"})
	if h.StreamLast() != before {
		t.Error("a lost card's checkout appended events")
	}
}

// TestPINs: the patron password (AD) is checked against the patron's PIN: a right one is
// CQ Y, a wrong one refuses the transaction with CQ N; with --sip2-require-pin a missing
// password or a patron without a PIN is refused too.
func TestPINs(t *testing.T) {
	const pinCard, pin = "21000000555001", "8642"
	for _, require := range []bool{false, true} {
		t.Run(fmt.Sprintf("require=%v", require), func(t *testing.T) {
			h := start(t, false, lethetest.WithSIP2Config(func(c *node.SIP2Config) { c.RequirePIN = require }))
			lethetest.MustDesk[schemas.Registered](h, schemas.CmdRegisterPatron, schemas.RegisterPatron{
				CommandID: lethetest.CmdID(), HomeBranch: "main", Card: pinCard, PIN: pin,
				Profile: schemas.Profile{Name: "Pin Holder", BirthDate: "1990-02-03"},
			})
			user, pw := h.SIP2Kiosk("main", "sip1")
			c := dial(t, h.SIP2Addr(), true)
			login(t, h, c, user, pw)
			r := parse(t, c.send("23000"+epoch+"AOlethe|AA"+pinCard+"|AD"+pin+"|"))
			if r.get("CQ") != "Y" || r.get("BL") != "Y" {
				t.Errorf("right PIN: %v", r.fields)
			}
			before := h.StreamLast()
			r = parse(t, c.send("23000"+epoch+"AOlethe|AA"+pinCard+"|AD9999|"))
			if r.get("CQ") != "N" || r.get("BL") != "Y" || r.get("BV") != "" {
				t.Errorf("wrong PIN: %v, want BL Y, CQ N and no record", r.fields)
			}
			// Without a PIN the machine learns whether the card is good, to ask for the PIN;
			// where PINs are required, nothing more.
			r = parse(t, c.send("23000"+epoch+"AOlethe|AA"+pinCard+"|"))
			if require && (r.get("BL") != "Y" || r.get("CQ") != "N" || r.get("BV") != "" || r.get("AF") != "enter your PIN") {
				t.Errorf("no PIN, required: %v", r.fields)
			}
			if !require && (r.get("BL") != "Y" || r.get("BV") != "0.00") {
				t.Errorf("no PIN, not required: %v", r.fields)
			}
			r = parse(t, c.send("23000"+epoch+"AOlethe|AA21000000000404|"))
			if r.get("BL") != "N" || r.get("AF") != "card not recognised" {
				t.Errorf("unknown card without a PIN: %v", r.fields)
			}
			parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+pinCard+"|AB30000001|AD9999|")).want(t, "12", map[int]string{0: "0"})
			if h.StreamLast() != before {
				t.Error("a checkout with a wrong PIN appended events")
			}
			want := map[bool]string{false: "1", true: "0"}[require]
			parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+pinCard+"|AB30000002|")).want(t, "12", map[int]string{0: want})
			parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000003|AD1234|")).want(t, "12", map[int]string{0: want})
			parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+pinCard+"|AB30000001|AD"+pin+"|")).want(t, "12", map[int]string{0: "1"})
			if strings.Contains(h.Logs.String(), pin) || strings.Contains(h.Logs.String(), "9999") {
				t.Error("a PIN reached the log")
			}
		})
	}
}

// TestTwoTerminalsRaceForOneItem: two terminals check one item out at once; exactly one
// succeeds.
func TestTwoTerminalsRaceForOneItem(t *testing.T) {
	h := start(t, false)
	h.Register("21000000999888", "Other Reader", "1970-01-01")
	cards := []string{card, "21000000999888"}
	var clients []*client
	for i, k := range []string{"sip1", "sip2"} {
		user, pw := h.SIP2Kiosk("main", k)
		c := dial(t, h.SIP2Addr(), i == 0)
		login(t, h, c, user, pw)
		clients = append(clients, c)
	}
	replies := make([]string, 2)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = c.send("11NN" + epoch + strings.Repeat(" ", 18) + "AOlethe|AA" + cards[i] + "|AB30000002|")
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range replies {
		if strings.HasPrefix(r, "121") {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of two racing checkouts succeeded, want 1: %q", ok, replies)
	}
	if n := lethetest.CountType(h.Events(), schemas.TypeItemCheckedOut); n != 1 {
		t.Errorf("%d checked_out events, want 1", n)
	}
}

// TestLogin: nothing works before a login, a wrong password is refused and logged
// without it, repeated failures close the session, and revoking the kiosk cuts its open
// session.
func TestLogin(t *testing.T) {
	h := start(t, false)
	user, pw := h.SIP2Kiosk("main", "sip1")
	before := h.StreamLast()

	c := dial(t, h.SIP2Addr(), false)
	parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000001|")).want(t, "12", map[int]string{0: "0"})
	parse(t, c.send("9900302.00")).want(t, "98", map[int]string{0: "N"})
	parse(t, c.send("17"+epoch+"AB30000001|")).want(t, "18", map[int]string{0: "01"})
	if _, err := c.r.ReadByte(); err == nil {
		t.Error("the session stayed open after three commands without a login")
	}
	if h.StreamLast() != before {
		t.Error("a command before login appended events")
	}

	c = dial(t, h.SIP2Addr(), true)
	const wrong = "Wrong-Password-Marker-93"
	for range 3 {
		parse(t, c.send("9300CN"+user+"|CO"+wrong+"|")).want(t, "94", map[int]string{0: "0"})
	}
	if _, err := c.r.ReadByte(); err == nil {
		t.Error("the session stayed open after three failed logins")
	}
	// Two more failures from this address, then even the right password is not checked.
	c = dial(t, h.SIP2Addr(), true)
	for range 2 {
		parse(t, c.send("9300CN"+user+"|CO"+wrong+"|")).want(t, "94", map[int]string{0: "0"})
	}
	c = dial(t, h.SIP2Addr(), true)
	parse(t, c.send("9300CN"+user+"|CO"+pw+"|")).want(t, "94", map[int]string{0: "0"})
	if strings.Contains(h.Logs.String(), wrong) || strings.Contains(h.Logs.String(), pw) {
		t.Error("a password reached the log")
	}
	if !strings.Contains(h.Logs.String(), "sip2 login failed") {
		t.Error("failed logins are not logged")
	}
}

func TestRevokedKioskSessionIsCut(t *testing.T) {
	h := start(t, false)
	user, pw := h.SIP2Kiosk("main", "sip1")
	c := dial(t, h.SIP2Addr(), true)
	login(t, h, c, user, pw)
	parse(t, c.send("9900302.00")).want(t, "98", map[int]string{0: "Y"})
	h.RevokeKiosk("main", "sip1")
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("a revoked kiosk's SIP2 session stayed open")
	}
	c = dial(t, h.SIP2Addr(), true)
	parse(t, c.send("9300CN"+user+"|CO"+pw+"|")).want(t, "94", map[int]string{0: "0"})
}

// TestBadInput: random bytes, a huge line, missing fixed fields, unknown ids and invalid
// encodings get 96 or a closed connection, never a crash, never an event.
func TestBadInput(t *testing.T) {
	h := start(t, false)
	user, pw := h.SIP2Kiosk("main", "sip1")
	before := h.StreamLast()
	c := dial(t, h.SIP2Addr(), false)
	login(t, h, c, user, pw)
	for _, b := range []string{"42hello", "11NN2030", "\xff\xfe\x00\x01", "9", "09N" + epoch} {
		if r := c.raw(b); !strings.HasPrefix(r, "96") {
			t.Errorf("%q answered %q, want 96", b, r)
		}
	}
	// Five in a row that cannot be read: the session is closed.
	if _, err := c.r.ReadByte(); err == nil {
		t.Error("the session stayed open after five messages that could not be read")
	}
	// A message with invalid UTF-8 in a field is read as ISO-8859-1: an unknown barcode.
	c = dial(t, h.SIP2Addr(), false)
	login(t, h, c, user, pw)
	parse(t, c.raw("17"+epoch+"AB\xe9\xe9|")).want(t, "18", map[int]string{0: "01"})
	c = dial(t, h.SIP2Addr(), false)
	_, _ = c.c.Write([]byte(strings.Repeat("9", 1<<20)))
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.r.ReadString('\r'); err == nil {
		t.Error("a huge line was answered")
	}
	if h.StreamLast() != before {
		t.Error("bad input appended events")
	}
	// The server still serves.
	c = dial(t, h.SIP2Addr(), false)
	login(t, h, c, user, pw)
}

// TestPrivacy: every message with a marker name, card and PIN: none of them in the log,
// the stream or any reply (the card only where the spec echoes it, AA), and no reply
// names the borrower of an item.
func TestPrivacy(t *testing.T) {
	h := start(t, true)
	user, pw := h.SIP2Kiosk("main", "sip1")
	c := dial(t, h.SIP2Addr(), true)
	login(t, h, c, user, pw)
	const pin = "PIN-MARKER-4711"
	var replies []string
	for _, m := range []string{
		"23000" + epoch + "AOlethe|AA" + card + "|AD" + pin + "|",
		"11NN" + epoch + strings.Repeat(" ", 18) + "AOlethe|AA" + card + "|AB30000001|AD" + pin + "|",
		"63000" + epoch + "YYYY      AOlethe|AA" + card + "|AD" + pin + "|",
		"17" + epoch + "AOlethe|AB30000001|",
		"29NN" + epoch + strings.Repeat(" ", 18) + "AOlethe|AA" + card + "|AB30000001|AD" + pin + "|",
		"65" + epoch + "AOlethe|AA" + card + "|AD" + pin + "|",
		"37" + epoch + "0100USDBV1.00|AOlethe|AA" + card + "|AD" + pin + "|",
		"09N" + epoch + strings.Repeat(" ", 18) + "AOlethe|AB30000001|",
		"11NN" + epoch + strings.Repeat(" ", 18) + "AOlethe|AA21000000000404|AB30000001|",
		"35" + epoch + "AOlethe|AA" + card + "|AD" + pin + "|",
	} {
		r := c.send(m)
		replies = append(replies, r)
		p := parse(t, r)
		if p.id == "24" || p.id == "64" {
			if p.get("CQ") != "N" {
				t.Errorf("%s CQ = %q, want N: no PIN on record to check", p.id, p.get("CQ"))
			}
		}
		delete(p.fields, "AA") // the spec echoes the patron identifier to the terminal that sent it
		for code, vs := range p.fields {
			for _, v := range vs {
				if strings.Contains(v, card) || strings.Contains(v, "0404") {
					t.Errorf("reply %s field %s echoes a card", p.id, code)
				}
			}
		}
	}
	all := strings.Join(replies, "\n")
	for _, marker := range []string{"Zebulon", "Quixote", pin} {
		if strings.Contains(all, marker) {
			t.Errorf("a reply holds the marker %q", marker)
		}
		if strings.Contains(h.Logs.String(), marker) {
			t.Errorf("the log holds the marker %q", marker)
		}
	}
	if strings.Contains(h.Logs.String(), card) {
		t.Error("the log holds the card")
	}
	for _, ev := range h.Events() {
		raw := fmt.Sprintf("%+v %s", ev, ev.Data)
		for _, marker := range []string{card, "Zebulon", "Quixote", pin} {
			if strings.Contains(raw, marker) {
				t.Errorf("event %s holds the marker %q", ev.Type, marker)
			}
		}
	}
	testkit.WaitFor(t, "the patron info on the access record", func() bool { return h.AccessEntries() > 0 })
}

// TestTLSAndLoopback: with a certificate the gateway speaks TLS; without one it refuses to
// listen anywhere but loopback, naming the flags.
func TestTLSAndLoopback(t *testing.T) {
	certFile, keyFile, pool := testkit.SelfSignedCert(t)
	h := start(t, false, lethetest.WithSIP2Config(func(c *node.SIP2Config) { c.TLSCert, c.TLSKey = certFile, keyFile }))
	user, pw := h.SIP2Kiosk("main", "sip1")
	conn, err := tls.Dial("tcp", h.SIP2Addr(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, c: conn, r: bufio.NewReader(conn), checksum: true}
	login(t, h, c, user, pw)
	parse(t, c.send("9900302.00")).want(t, "98", map[int]string{0: "Y"})
	// A plain-text client gets nothing from the TLS listener.
	plain := dial(t, h.SIP2Addr(), false)
	_ = plain.c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = plain.c.Write([]byte("9300CN" + user + "|CO" + pw + "|\r"))
	if line, err := plain.r.ReadString('\r'); err == nil && strings.HasPrefix(line, "94") {
		t.Error("the TLS listener answered a plain-text login")
	}

	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := h.Cfg
	cfg.SIP2 = node.SIP2Config{Listen: "0.0.0.0:0"}
	s, err := node.Start(testkit.Context(t), cfg)
	if err == nil {
		s.Stop()
		t.Fatal("a plain SIP2 listener off loopback started")
	}
	if !strings.Contains(err.Error(), "--sip2-tls-cert") {
		t.Errorf("start off loopback: %v, want it to name --sip2-tls-cert", err)
	}
}

// TestBoundsAndShutdown: sessions beyond the per-address cap are closed at once; a stop
// with sessions open (one idle, one before login) closes them and returns.
func TestBoundsAndShutdown(t *testing.T) {
	h := start(t, false, lethetest.WithSIP2Config(func(c *node.SIP2Config) { c.MaxConnsPerIP = 2 }))
	user, pw := h.SIP2Kiosk("main", "sip1")
	a := dial(t, h.SIP2Addr(), true)
	login(t, h, a, user, pw)
	b := dial(t, h.SIP2Addr(), false)
	parse(t, b.send("9900302.00")).want(t, "98", map[int]string{0: "N"})
	c := dial(t, h.SIP2Addr(), false)
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write([]byte("9900302.00\r")); err == nil {
		if _, err := c.r.ReadString('\r'); err == nil {
			t.Error("a third session from one address was answered, with a cap of 2")
		}
	}
	testkit.WaitFor(t, "the refused session counted", func() bool { return h.S.SIP2.Refused() == 1 })
	if m := h.Scrape(); !strings.Contains(m, "\nlethe_sip2_refused_total 1\n") || !strings.Contains(m, "\nlethe_sip2_sessions 2\n") {
		t.Errorf("metrics do not show 2 sessions and 1 refused:\n%s", m)
	}
	done := make(chan error, 1)
	go func() { done <- h.Stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stop did not return with SIP2 sessions open")
	}
	for _, cl := range []*client{a, b} {
		_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cl.r.ReadByte(); err == nil {
			t.Error("a session outlived the server")
		}
	}
}

// TestPatronInfoIsRecorded: 23, 63 and 65 are each one disclosure on the card basis, on
// the access record as the logged-in kiosk's patron_info, exactly like the NATS kiosk
// API's; 17 item information discloses no one and is not recorded; a wrong PIN discloses
// nothing and writes no entry of its own: it counts as a card miss of the terminal, which
// the kiosk API summarises on the access record once a window (card_misses).
func TestPatronInfoIsRecorded(t *testing.T) {
	h := start(t, false)
	id := h.Register("21000000000812", "Rec Orded", "1990-01-01")
	lethetest.MustDesk[schemas.Accepted](h, schemas.CmdSetPIN, schemas.SetPIN{CommandID: lethetest.CmdID(), PatronID: id, PIN: "1357"})
	user, pw := h.SIP2Kiosk("main", "sip1")
	c := dial(t, h.SIP2Addr(), true)
	login(t, h, c, user, pw)
	for _, m := range []string{
		"23000" + epoch + "AOlethe|AA21000000000812|",
		"63000" + epoch + "          AOlethe|AA21000000000812|",
		"65" + epoch + "AOlethe|AA21000000000812|",
	} {
		before := h.AccessEntries()
		c.send(m)
		if n := h.AccessEntries() - before; n != 1 {
			t.Fatalf("%.2s wrote %d access entries, want 1", m, n)
		}
		e := h.LastAccessEntry()
		if e.Role != policy.Kiosk || e.Basis != policy.Card || e.Scope != policy.CurrentRecord || e.Action != "patron_info" ||
			e.Staff != "kiosk main/sip1" || len(e.Patrons) != 1 || e.Patrons[0] != id {
			t.Errorf("%.2s access entry = %+v", m, e)
		}
	}
	before := h.AccessEntries()
	c.send("17" + epoch + "AB30000001|")
	c.send("63000" + epoch + "          AOlethe|AA21000000000812|AD0000|")
	if n := h.AccessEntries() - before; n != 0 {
		t.Errorf("item information and a wrong PIN wrote %d access entries, want 0", n)
	}
}

// TestRefusalsTranscript: what a machine hears when Lethe says no, kept as a golden
// transcript: commands before login, a wrong password, a bad checksum, an unknown message,
// an unknown card and item, a payment with payments off, and messages Lethe does not do.
func TestRefusalsTranscript(t *testing.T) {
	h := start(t, false)
	user, pw := h.SIP2Kiosk("main", "sip1")
	c := dial(t, h.SIP2Addr(), true)
	c.log = &strings.Builder{}
	c.send("11NN" + epoch + strings.Repeat(" ", 18) + "AOlethe|AA" + card + "|AB30000001|")
	c.send("9900302.00")
	c.send("9300CN" + user + "|COnot-the-password|")
	kept := c.log
	c.log = nil
	login(t, h, c, user, pw)
	c.log = kept
	fmt.Fprintf(c.log, "# logged in with the kiosk's password\n")
	c.seq++
	good := c.frame("17" + epoch + "AOlethe|AB30000001|")
	c.raw(good[:len(good)-4] + "0000")
	c.raw("42hello")
	c.send("23000" + epoch + "AOlethe|AA21000000000404|")
	c.send("11NN" + epoch + strings.Repeat(" ", 18) + "AOlethe|AA21000000000404|AB30000001|")
	c.send("17" + epoch + "AOlethe|ABNOSUCHITEM|")
	c.send("09N" + epoch + strings.Repeat(" ", 18) + "AOlethe|AB30000001|")
	c.send("37" + epoch + "0100USDBV1.00|AOlethe|AA" + card + "|")
	c.send("01N" + epoch + "AOlethe|ALcard retained|AA" + card + "|")
	c.send("19" + epoch + "AOlethe|AB30000001|")
	c.send("25" + epoch + "AOlethe|AA" + card + "|")
	golden(t, "refusals.txt", c.log.String())
}

// TestKioskRateIsShared: a kiosk's SIP2 messages and its NATS requests draw on one rate;
// beyond it a message is refused with its own response and changes nothing, and status
// messages are always answered.
func TestKioskRateIsShared(t *testing.T) {
	h := start(t, false, func(c *node.ServiceConfig) { c.Kiosks.Rate, c.Kiosks.Burst = 0.001, 3 })
	// The kiosk sends one NATS request first: one of its three.
	if r := h.Kiosk("sip1", schemas.CmdPatronInfo, schemas.PatronInfo{Card: card}); !r.OK {
		t.Fatalf("NATS patron_info = %+v", r.Error)
	}
	pw, err := identity.Open(h.Cfg.Data).SetSIP2Password("main", "sip1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.S.ReloadIdentities(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, h.SIP2Addr(), true)
	login(t, h, c, identity.SIP2User("main", "sip1"), pw)
	for range 2 {
		parse(t, c.send("17"+epoch+"AB30000001|")).want(t, "18", map[int]string{0: "03"})
	}
	before := h.StreamLast()
	r := parse(t, c.send("11NN"+epoch+strings.Repeat(" ", 18)+"AOlethe|AA"+card+"|AB30000001|"))
	r.want(t, "12", map[int]string{0: "0"})
	if !strings.Contains(r.get("AF"), "too many requests") || h.StreamLast() != before {
		t.Errorf("beyond the rate: %v, %d events appended", r.fields, h.StreamLast()-before)
	}
	parse(t, c.send("9900302.00")).want(t, "98", map[int]string{0: "Y"})
}
