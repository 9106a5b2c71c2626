package sip2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/schemas"
)

// call is one message of a logged-in terminal being answered.
type call struct {
	s    *Server
	m    Message
	term Terminal
	at   ledger.Station
}

// supported is the 98's supported-messages field (BX): Y for each message Lethe answers
// with what it asks for, in the spec's order: patron status, checkout, checkin, block
// patron, SC/ACS status, request SC/ACS resend, login, patron information, end patron
// session, fee paid, item information, item status update, patron enable, hold, renew,
// renew all.
func (s *Server) supported() string {
	fee := "N"
	if s.cfg.AllowPayments {
		fee = "Y"
	}
	return "YYYNYYYYY" + fee + "YNNNYY"
}

// Messages a terminal gets to tell it what Lethe does not do here.
const (
	msgBlockPatron = "cards are blocked at the desk; this card was not blocked"
	msgNotHere     = "not supported by this library's system; please see staff"
	msgPayments    = "fines are paid at the desk"
)

// answer maps one message onto the ledger: the same commands, policy decisions and access
// record as the NATS kiosk API, from the station of the kiosk identity logged in.
func (c *call) answer(ctx context.Context) Message {
	switch c.m.ID {
	case IDSCStatus:
		return c.s.status(c.m, true)
	case IDPatronStatus:
		return c.patronStatus(ctx)
	case IDPatronInfo:
		return c.patronInfo(ctx)
	case IDCheckout:
		return c.checkout(ctx)
	case IDCheckin:
		return c.checkin(ctx)
	case IDRenew:
		return c.renew(ctx)
	case IDRenewAll:
		return c.renewAll(ctx)
	case IDItemInfo:
		return c.itemInfo()
	case IDFeePaid:
		return c.feePaid(ctx)
	case IDEndSession:
		return c.reply(IDEndSessionR, "Y"+c.now(), c.inst(), Field{"AA", c.m.Value("AA")})
	case IDBlockPatron:
		return c.s.refusal(c.m, msgBlockPatron)
	}
	return c.s.refusal(c.m, msgNotHere) // item status update, patron enable, hold
}

func (c *call) now() string { return FormatDate(c.s.cfg.Now()) }

func (c *call) inst() Field {
	if v := c.m.Value("AO"); v != "" {
		return Field{"AO", v}
	}
	return Field{"AO", c.s.cfg.Institution}
}

// reply builds a response carrying the request's sequence number and checksum choice.
func (c *call) reply(id, fixed string, fields ...Field) Message {
	return Message{ID: id, Fixed: fixed, Fields: fields, Seq: c.m.Seq, Checksum: c.m.Checksum}
}

// commandID derives a command id from the terminal, the sequence number and the message,
// so a message sent again (after a 96, or a timeout) is the same command and the ledger
// applies it once. part tells apart the commands one message makes (renew all).
//
// Only what the stream holds in the clear anyway goes into it: the terminal, the sequence
// number, the message id, its fixed fields (dates and flags) and the fields in idFields
// (barcode, institution, fine id, amount). Never the card (AA) or the PIN (AD): the id is
// on the stream for good, and an unkeyed hash of a short card number next to its loan
// would be a patron-item link anyone could recover by trying every card. Two messages
// that differ only in the card are then one command id: the ledger refuses the second as
// an id reused for another command, which only a machine lending one item to two cards
// within one second and one sequence number could meet.
func (c *call) commandID(part string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%d\x00%s\x00%s\x00%s", c.term.name(), c.m.Seq, part, c.m.ID, c.m.Fixed)
	for _, f := range c.m.Fields {
		if idFields[f.Code] {
			fmt.Fprintf(&b, "\x00%s=%s", f.Code, f.Value)
		}
	}
	return uuid.NewSHA1(sip2Namespace, []byte(b.String())).String()
}

// idFields are the variable fields a command id is derived from: none of them patron data.
var idFields = map[string]bool{"AB": true, "AO": true, "CG": true, "BV": true, "BK": true}

// sip2Namespace is the UUID namespace of command ids derived from SIP2 messages.
var sip2Namespace = uuid.MustParse("6f1c4b1e-3c1a-5d7e-9a51-5e1f0c2b7a10")

// exec runs a kiosk command through the ledger exactly as the kiosk API does, and counts
// a card that opened no account against the terminal's card-miss limit.
func (c *call) exec(ctx context.Context, command string, cmd any, out any) error {
	raw, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	card := command == schemas.CmdCheckOut || command == schemas.CmdRenew || command == schemas.CmdPatronInfo
	if card && c.s.misses != nil && c.s.misses.CardsBlocked(c.term.name()) {
		return schemas.Errorf(schemas.CodeRateLimited, "too many cards were not recognised here; wait a minute or see staff")
	}
	res, err := c.s.l.Execute(ctx, c.at, command, raw)
	if err != nil {
		if c.s.misses != nil && (errors.Is(err, ledger.ErrUnknownCard) || errors.Is(err, ledger.ErrCardLost)) {
			c.s.misses.CardMissed(c.term.name())
		}
		pub := schemas.Public(err)
		c.s.cfg.Logger.Log(ctx, schemas.LogLevel(err), "sip2 command refused", "kiosk", c.term.name(), "id", c.m.ID, "code", pub.Code, "err", err)
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// screen is the screen message (AF) for a refusal: the public message, which never
// names a patron or echoes a card.
func screen(err error) string { return schemas.Public(err).Message }

// record reads the presented card's own current record: a kiosk patron_info, decided by
// Policy 1002 on the card basis and written on the access record.
func (c *call) record(ctx context.Context) (schemas.PatronRecord, error) {
	var rec schemas.PatronRecord
	err := c.exec(ctx, schemas.CmdPatronInfo, schemas.PatronInfo{Card: c.m.Value("AA")}, &rec)
	return rec, err
}

// pinAndRecord checks the PIN, then reads the record: nothing is disclosed, or recorded,
// for a wrong PIN.
func (c *call) pinAndRecord(ctx context.Context) (schemas.PatronRecord, string, error) {
	cq, err := c.pin(ctx)
	if err != nil {
		return schemas.PatronRecord{}, cq, err
	}
	rec, err := c.record(ctx)
	return rec, cq, err
}

// patronStatus14 is the 14-character patron status of a record, or of a refusal.
func (c *call) patronStatus14(rec *schemas.PatronRecord, err error) string {
	st := []byte(strings.Repeat(" ", 14))
	rules := c.s.l.Rules()
	switch {
	case err != nil:
		st[0], st[1] = 'Y', 'Y' // charge and renewal privileges denied
		if errors.Is(err, ledger.ErrCardLost) {
			st[4] = 'Y' // card reported lost
		}
	default:
		if rec.Blocked || rec.OwedCents >= rules.BlockCents {
			st[0], st[1] = 'Y', 'Y'
			st[10] = 'Y' // excessive outstanding fines
		}
		if len(rec.Loans) >= rules.MaxLoans {
			st[0] = 'Y'
			st[5] = 'Y' // too many items charged
		}
	}
	return string(st)
}

// language is the request's language, echoed; "000" (unknown) when it is not three
// digits.
func (c *call) language() string {
	l := c.m.Fix("language")
	if len(l) == 3 && strings.Trim(l, "0123456789") == "" {
		return l
	}
	return "000"
}

// Why a patron transaction is refused for its PIN. None names the patron.
var (
	errPINWrong    = schemas.Errorf(schemas.CodeForbidden, "wrong PIN")
	errPINRequired = schemas.Errorf(schemas.CodeForbidden, "enter your PIN")
	errPINNone     = schemas.Errorf(schemas.CodeForbidden, "this card has no PIN yet; please see staff")
)

// pin checks the patron password (AD) against the card holder's PIN, as the library's
// rules say, before anything else is done for the card. It returns the CQ to answer
// ("" when no password was sent) and a refusal, if the transaction must stop. A wrong
// PIN counts as a card miss of the terminal, so guessing PINs at one machine is slowed
// like guessing cards; the ledger also refuses a card after five wrong PINs.
func (c *call) pin(ctx context.Context) (string, error) {
	pin, sent := c.m.Get("AD")
	if (!sent || pin == "") && !c.s.cfg.RequirePIN {
		return "", nil
	}
	if c.s.misses != nil && c.s.misses.CardsBlocked(c.term.name()) {
		return "N", schemas.Errorf(schemas.CodeRateLimited, "too many cards were not recognised here; wait a minute or see staff")
	}
	card := c.m.Value("AA")
	var res ledger.PINCheck
	var err error
	if !sent || pin == "" {
		// Required and not given: say whether the card is good, so the machine asks for
		// the PIN (valid patron Y) rather than reject the card, and nothing more.
		if err = c.s.l.CardOpens(card); err == nil {
			return "N", errPINRequired
		}
	} else {
		res, err = c.s.l.CheckPIN(ctx, card, pin)
	}
	if err != nil {
		if c.s.misses != nil && (errors.Is(err, ledger.ErrUnknownCard) || errors.Is(err, ledger.ErrCardLost)) {
			c.s.misses.CardMissed(c.term.name())
		}
		pub := schemas.Public(err)
		c.s.cfg.Logger.Log(ctx, schemas.LogLevel(err), "sip2 PIN check refused", "kiosk", c.term.name(), "id", c.m.ID, "code", pub.Code, "err", err)
		return "N", err
	}
	switch res {
	case ledger.PINMatch:
		return "Y", nil
	case ledger.PINNone:
		// Nothing to check the password against: not valid, and refused only where the
		// library requires PINs.
		if c.s.cfg.RequirePIN {
			return "N", errPINNone
		}
		return "N", nil
	}
	if c.s.misses != nil {
		c.s.misses.CardMissed(c.term.name())
	}
	c.s.cfg.Logger.Debug("sip2 wrong PIN", "kiosk", c.term.name(), "id", c.m.ID)
	return "N", errPINWrong
}

// pinRefusal reports whether err refuses the PIN, the card itself being good.
func pinRefusal(err error) bool {
	return errors.Is(err, errPINWrong) || errors.Is(err, errPINRequired) || errors.Is(err, errPINNone)
}

// patronFields are the fields 24 and 64 share, before their own.
func (c *call) patronFields(rec *schemas.PatronRecord, err error, cq string) []Field {
	fields := []Field{c.inst(), {"AA", c.m.Value("AA")}, {"AE", ""}} // AE: the name is never sent
	valid := "N"
	if err == nil || pinRefusal(err) {
		valid = "Y" // the card is good; what is wrong is the PIN
	}
	fields = append(fields, Field{"BL", valid})
	if cq != "" {
		fields = append(fields, Field{"CQ", cq})
	}
	if err == nil {
		fields = append(fields, Field{"BH", c.s.cfg.Currency}, Field{"BV", money(rec.OwedCents)})
	}
	return fields
}

func (c *call) patronStatus(ctx context.Context) Message {
	rec, cq, err := c.pinAndRecord(ctx)
	fields := c.patronFields(&rec, err, cq)
	if err != nil {
		fields = append(fields, Field{"AF", screen(err)})
	}
	return c.reply(IDPatronStatusR, c.patronStatus14(&rec, err)+c.language()+c.now(), fields...)
}

func (c *call) patronInfo(ctx context.Context) Message {
	rec, cq, err := c.pinAndRecord(ctx)
	var overdue []string
	for _, l := range rec.Loans {
		if l.Overdue {
			overdue = append(overdue, l.Barcode)
		}
	}
	fixed := c.patronStatus14(&rec, err) + c.language() + c.now() +
		count(0) + count(len(overdue)) + count(len(rec.Loans)) + count(len(rec.Fines)) + count(0) + count(0)
	fields := c.patronFields(&rec, err, cq)
	if err != nil {
		return c.reply(IDPatronInfoR, fixed, append(fields, Field{"AF", screen(err)})...)
	}
	rules := c.s.l.Rules()
	fields = append(fields, Field{"CB", fmt.Sprintf("%04d", min(rules.MaxLoans, 9999))}, Field{"CC", money(rules.BlockCents)})
	// The summary field asks for one list: its first Y. Holds, recalls and unavailable
	// holds do not exist in Lethe, so their lists are empty.
	var code string
	var items []string
	switch strings.IndexByte(c.m.Fix("summary"), 'Y') {
	case 1:
		code, items = "AT", overdue
	case 2:
		code = "AU"
		for _, l := range rec.Loans {
			items = append(items, l.Barcode)
		}
	case 3:
		code = "AV"
		for _, f := range rec.Fines {
			// The fine's id is what 37 fee paid names in CG.
			items = append(items, fmt.Sprintf("%s %s %s", f.FineID, money(f.RemainingCents), f.Reason))
		}
	}
	if code != "" {
		start, end := itemRange(c.m.Value("BP"), c.m.Value("BQ"), len(items))
		for _, it := range items[start:end] {
			fields = append(fields, Field{code, it})
		}
	}
	return c.reply(IDPatronInfoR, fixed, fields...)
}

// itemRange reads BP and BQ (1-based, inclusive) into a slice range of n items.
func itemRange(bp, bq string, n int) (int, int) {
	start, end := 1, n
	if v, err := strconv.Atoi(strings.TrimSpace(bp)); err == nil && v >= 1 {
		start = v
	}
	if v, err := strconv.Atoi(strings.TrimSpace(bq)); err == nil && v >= 1 {
		end = v
	}
	end = min(end, n)
	start = min(start, end+1)
	return start - 1, end
}

func count(n int) string { return fmt.Sprintf("%04d", min(n, 9999)) }

// money writes cents as the SIP2 amounts are written: 12.50.
func money(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }

// parseMoney reads an amount like 12.50, 12.5 or 12 into cents.
func parseMoney(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 2 || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" || len(whole) > 9 {
		return 0, false
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	for len(frac) < 2 {
		frac += "0"
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	return w*100 + f, true
}

// clockSkew is how far a machine's clock may be behind Lethe's before a date it sends is
// taken as the time of an offline transaction rather than as now.
const clockSkew = time.Minute

// offline returns the time of an offline transaction from a date field: a date more than
// clockSkew before now. Otherwise nil: the transaction happens now.
func (c *call) offline(field string) (*time.Time, error) {
	t, ok, err := ParseDate(c.m.Fix(field), c.s.cfg.Location)
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeInvalid, "the %s is not a SIP2 date", field)
	}
	if !ok || !t.Before(c.s.cfg.Now().Add(-clockSkew)) {
		return nil, nil
	}
	return &t, nil
}

func (c *call) checkout(ctx context.Context) Message {
	var res schemas.CheckOutResult
	cmd := schemas.CheckOut{CommandID: c.commandID(""), Card: c.m.Value("AA"), Barcode: c.m.Value("AB")}
	var err error
	if c.m.Fix("no block") == "Y" {
		// A checkout the machine made while offline, sent now: the loan begins when the
		// item went out (the transaction date). The rules still decide it.
		cmd.CheckedOutAt, err = c.offline("transaction date")
	}
	if err == nil {
		_, err = c.pin(ctx)
	}
	if err == nil {
		err = c.exec(ctx, schemas.CmdCheckOut, cmd, &res)
	}
	ok, desens := "1", "Y"
	fields := []Field{c.inst(), {"AA", c.m.Value("AA")}, {"AB", c.m.Value("AB")}}
	if err != nil {
		ok, desens = "0", "N"
		fields = append(fields, Field{"AJ", ""}, Field{"AH", ""}, Field{"AF", screen(err)})
	} else {
		fields = append(fields, Field{"AJ", res.Title}, Field{"AH", FormatDate(res.Due)})
	}
	return c.reply(IDCheckoutR, ok+"N"+"U"+desens+c.now(), fields...)
}

func (c *call) checkin(ctx context.Context) Message {
	cmd := schemas.Return{CommandID: c.commandID(""), Barcode: c.m.Value("AB")}
	// An offline return, sent late with the time the item came back: the loan ends then,
	// and a fine is counted to then. A return date of about now is now.
	var res schemas.ReturnResult
	var err error
	cmd.ReturnedAt, err = c.offline("return date")
	if err == nil {
		err = c.exec(ctx, schemas.CmdReturn, cmd, &res)
	}
	// AA (the patron) is never sent: a return names no borrower.
	fields := []Field{c.inst(), {"AB", c.m.Value("AB")}}
	if err != nil {
		fields = append(fields, Field{"AQ", ""}, Field{"AF", screen(err)})
		return c.reply(IDCheckinR, "0NUN"+c.now(), fields...)
	}
	alert := "N"
	fields = append(fields, Field{"AQ", res.Branch}, Field{"AJ", res.Title})
	if res.Branch != c.at.Branch {
		alert = "Y"
		fields = append(fields, Field{"AF", "this item belongs to branch " + res.Branch})
	}
	if res.FineCents > 0 {
		alert = "Y"
		fields = append(fields, Field{"AF", "returned late: a fine of " + money(res.FineCents) + " was charged"})
	}
	return c.reply(IDCheckinR, "1YU"+alert+c.now(), fields...)
}

func (c *call) renew(ctx context.Context) Message {
	var res schemas.RenewResult
	_, err := c.pin(ctx)
	if err == nil {
		err = c.exec(ctx, schemas.CmdRenew, schemas.Renew{
			CommandID: c.commandID(""), Card: c.m.Value("AA"), Barcode: c.m.Value("AB"),
		}, &res)
	}
	fields := []Field{c.inst(), {"AA", c.m.Value("AA")}, {"AB", c.m.Value("AB")}}
	if err != nil {
		fields = append(fields, Field{"AJ", ""}, Field{"AH", ""}, Field{"AF", screen(err)})
		return c.reply(IDRenewR, "0NUN"+c.now(), fields...)
	}
	title := ""
	if it, err := c.s.l.ItemInfo(res.Barcode); err == nil {
		title = it.Title
	}
	fields = append(fields, Field{"AJ", title}, Field{"AH", FormatDate(res.Due)})
	return c.reply(IDRenewR, "1YUN"+c.now(), fields...)
}

func (c *call) renewAll(ctx context.Context) Message {
	rec, _, err := c.pinAndRecord(ctx)
	if err != nil {
		return c.reply(IDRenewAllR, "0"+count(0)+count(0)+c.now(), c.inst(), Field{"AF", screen(err)})
	}
	var renewed, not []Field
	for _, l := range rec.Loans {
		var res schemas.RenewResult
		err := c.exec(ctx, schemas.CmdRenew, schemas.Renew{
			CommandID: c.commandID(l.Barcode), Card: c.m.Value("AA"), Barcode: l.Barcode,
		}, &res)
		if err != nil {
			not = append(not, Field{"BN", l.Barcode})
		} else {
			renewed = append(renewed, Field{"BM", l.Barcode})
		}
	}
	fields := append([]Field{c.inst()}, renewed...)
	fields = append(fields, not...)
	return c.reply(IDRenewAllR, "1"+count(len(renewed))+count(len(not))+c.now(), fields...)
}

// Circulation statuses of 18 item information.
const (
	circOther     = "01"
	circAvailable = "03"
	circCharged   = "04"
	circLost      = "12"
)

func (c *call) itemInfo() Message {
	barcode := c.m.Value("AB")
	it, err := c.s.l.ItemInfo(barcode)
	// Security marker 00 (other) and fee type 01 (other/unknown): Lethe keeps neither.
	if err != nil {
		return c.reply(IDItemInfoR, circOther+"00"+"01"+c.now(), Field{"AB", barcode}, Field{"AJ", ""}, Field{"AF", screen(err)})
	}
	status := circOther
	switch it.Status {
	case model.ItemAvailable:
		status = circAvailable
	case model.ItemOnLoan:
		status = circCharged
	case model.ItemLost:
		status = circLost
	}
	fields := []Field{{"AB", it.Barcode}, {"AJ", it.Title}}
	if !it.Due.IsZero() {
		fields = append(fields, Field{"AH", FormatDate(it.Due)})
	}
	fields = append(fields, Field{"AQ", it.Branch})
	return c.reply(IDItemInfoR, status+"00"+"01"+c.now(), fields...)
}

func (c *call) feePaid(ctx context.Context) Message {
	fields := []Field{c.inst(), {"AA", c.m.Value("AA")}}
	if bk, ok := c.m.Get("BK"); ok {
		fields = append(fields, Field{"BK", bk})
	}
	refuse := func(msg string) Message {
		return c.reply(IDFeePaidR, "N"+c.now(), append(fields, Field{"AF", msg})...)
	}
	if !c.s.cfg.AllowPayments {
		return refuse(msgPayments)
	}
	if cur := c.m.Fix("currency type"); cur != c.s.cfg.Currency {
		return refuse("payments are taken in " + c.s.cfg.Currency)
	}
	cents, ok := parseMoney(c.m.Value("BV"))
	if !ok || cents <= 0 {
		return refuse("the amount is not a sum of money")
	}
	// The fine must be one of the presented card's own: read its record (a disclosure on
	// the card basis, recorded) and find it there.
	rec, _, err := c.pinAndRecord(ctx)
	if err != nil {
		return refuse(screen(err))
	}
	fineID := c.m.Value("CG")
	if fineID == "" && len(rec.Fines) == 1 {
		fineID = rec.Fines[0].FineID
	}
	found := false
	for _, f := range rec.Fines {
		found = found || f.FineID == fineID
	}
	switch {
	case len(rec.Fines) == 0:
		return refuse("there is no fine to pay")
	case !found:
		return refuse("name the fine to pay (fee identifier, from patron information)")
	}
	var res schemas.Accepted
	if err := c.exec(ctx, schemas.CmdPayFine, schemas.PayFine{CommandID: c.commandID(""), FineID: fineID, AmountCents: cents}, &res); err != nil {
		return refuse(screen(err))
	}
	return c.reply(IDFeePaidR, "Y"+c.now(), fields...)
}

// status is the 98 ACS status: online (after a login) or not.
func (s *Server) status(m Message, online bool) Message {
	on := "N"
	if online {
		on = "Y"
	}
	// On-line, checkin ok, checkout ok, renewal policy, no status update, off-line
	// transactions accepted (return dates are honoured), 3 retries. The timeout, in tenths
	// of a second, is the ledger's own bound on a command (30 s): a machine that gives up
	// sooner sends the message again, which is answered, not applied twice.
	fixed := on + on + on + on + "N" + "Y" + "300" + "003" + FormatDate(s.cfg.Now()) + "2.00"
	fields := []Field{{"AO", s.cfg.Institution}, {"AM", s.cfg.Institution}, {"BX", s.supported()}}
	if !online {
		fields = append(fields, Field{"AF", "log in first (93)"})
	}
	return Message{ID: IDACSStatus, Fixed: fixed, Fields: fields, Seq: m.Seq, Checksum: m.Checksum}
}

// refusal is the response a message gets when Lethe does not do what it asks (not
// logged in, or not supported): its own response type, saying no, with a screen message.
func (s *Server) refusal(m Message, text string) Message {
	now := FormatDate(s.cfg.Now())
	inst := m.Value("AO")
	if inst == "" {
		inst = s.cfg.Institution
	}
	blank14 := strings.Repeat(" ", 14)
	r := Message{Seq: m.Seq, Checksum: m.Checksum}
	af := Field{"AF", text}
	switch m.ID {
	case IDPatronStatus, IDBlockPatron:
		r.ID, r.Fixed = IDPatronStatusR, "YY"+blank14[2:]+"000"+now
		r.Fields = []Field{{"AO", inst}, {"AA", m.Value("AA")}, {"AE", ""}, {"BL", "N"}, af}
	case IDPatronInfo:
		r.ID, r.Fixed = IDPatronInfoR, "YY"+blank14[2:]+"000"+now+strings.Repeat("0000", 6)
		r.Fields = []Field{{"AO", inst}, {"AA", m.Value("AA")}, {"AE", ""}, {"BL", "N"}, af}
	case IDCheckout:
		r.ID, r.Fixed = IDCheckoutR, "0NUN"+now
		r.Fields = []Field{{"AO", inst}, {"AA", m.Value("AA")}, {"AB", m.Value("AB")}, {"AJ", ""}, {"AH", ""}, af}
	case IDCheckin:
		r.ID, r.Fixed = IDCheckinR, "0NUN"+now
		r.Fields = []Field{{"AO", inst}, {"AB", m.Value("AB")}, {"AQ", ""}, af}
	case IDRenew:
		r.ID, r.Fixed = IDRenewR, "0NUN"+now
		r.Fields = []Field{{"AO", inst}, {"AA", m.Value("AA")}, {"AB", m.Value("AB")}, {"AJ", ""}, {"AH", ""}, af}
	case IDRenewAll:
		r.ID, r.Fixed = IDRenewAllR, "0"+"0000"+"0000"+now
		r.Fields = []Field{{"AO", inst}, af}
	case IDItemInfo:
		r.ID, r.Fixed = IDItemInfoR, circOther+"00"+"01"+now
		r.Fields = []Field{{"AB", m.Value("AB")}, {"AJ", ""}, af}
	case IDFeePaid:
		r.ID, r.Fixed = IDFeePaidR, "N"+now
		r.Fields = []Field{{"AO", inst}, {"AA", m.Value("AA")}, af}
	case IDEndSession:
		r.ID, r.Fixed = IDEndSessionR, "N"+now
		r.Fields = []Field{{"AO", inst}, {"AA", m.Value("AA")}, af}
	case IDItemStatus:
		r.ID, r.Fixed = IDItemStatusR, "0"+now
		r.Fields = []Field{{"AB", m.Value("AB")}, af}
	case IDPatronEnable:
		r.ID, r.Fixed = IDPatronEnableR, "YY"+blank14[2:]+"000"+now
		r.Fields = []Field{{"AO", inst}, {"AA", m.Value("AA")}, {"AE", ""}, {"BL", "N"}, af}
	case IDHold:
		r.ID, r.Fixed = IDHoldR, "0N"+now
		r.Fields = []Field{{"AO", inst}, {"AA", m.Value("AA")}, af}
	case IDSCStatus:
		return s.status(m, false)
	default:
		return Message{ID: IDRequestResend, Seq: -1, Checksum: m.Checksum}
	}
	return r
}
