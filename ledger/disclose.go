package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/model"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/seal"
)

// Why a lookup identifies no single account. Like every refusal, they name no one.
var (
	errNoOne         = schemas.Errorf(schemas.CodeInvalid, "the request names no card and no name")
	errNoSuchName    = schemas.Errorf(schemas.CodeNotFound, "no open account has this name")
	errNameAmbiguous = schemas.Errorf(schemas.CodeConflict, "more than one account has this name and the date of birth given does not single one out")
)

// Requester is who asks for a patron's data: a staff account, or a kiosk.
type Requester struct {
	Name string // the staff account, or "kiosk <branch>/<id>"
	Role policy.Role
}

// Disclosure is one entry of the access record: who asked, on which basis, what they were
// given. Patrons are internal ids; the Recorder seals each under that patron's profile key
// and never stores it in the clear.
type Disclosure struct {
	At       time.Time
	By       Requester
	Action   string // what was asked: "lookup", "patron_info", "checkout", "collections_export", ...
	Basis    policy.Basis
	Scope    policy.Scope
	Clause   string // the clause of Policy 1002 that granted or refused
	OrderRef string // a court order's reference, when given
	Patrons  []string
	// Requests is how many requests the entry stands for when it summarises several (a
	// kiosk's card misses over a window); 0 means one.
	Requests int
}

// Recorder appends to the access record. Record returns only once the entry is durable.
type Recorder interface {
	Record(ctx context.Context, d Disclosure) error
}

// RecordAccess writes d to the access record: the one way every disclosure and refusal is
// recorded. An unrecorded disclosure must not happen, so failing to record is unavailable.
func (l *Ledger) RecordAccess(ctx context.Context, d Disclosure) error {
	if l.cfg.Recorder == nil {
		return schemas.Errorf(schemas.CodeUnavailable, "the access record is not available")
	}
	// An entry is a write like any other: refused before the disk is full. What it
	// would record is then not disclosed either.
	if err := l.disk.check(); err != nil {
		return err
	}
	if d.At.IsZero() {
		d.At = l.cfg.Now()
	}
	if err := l.cfg.Recorder.Record(ctx, d); err != nil {
		return unavailable(fmt.Errorf("record access: %w", err))
	}
	return nil
}

// DiscloseRequest asks for a patron's record on a basis of Policy 1002, with the evidence
// the requester presented. Which fields identify the account depends on the basis: the
// card for card and caregiver_with_card; the name (the child's, for a caregiver) for
// in_person and caregiver_photo_id; either for court_order.
type DiscloseRequest struct {
	By             Requester
	Action         string // recorded on the access record; default "lookup"
	Basis          policy.Basis
	Card           string
	Name           string
	BirthDate      string // in_person: the date of birth to verify; otherwise it only tells apart accounts with the same name
	PhotoIDChecked bool
	CaregiverName  string // the name on the caregiver's photo ID
	OrderRef       string
}

// Disclosed is what a request was given: the scope the policy allowed and only the part of
// the record that scope covers.
type Disclosed struct {
	Basis    policy.Basis         `json:"basis"`
	Scope    policy.Scope         `json:"scope"`
	Clause   policy.Clause        `json:"clause"`
	PatronID string               `json:"patron_id"`
	Record   schemas.PatronRecord `json:"record"`
	// History is set for a court order: closed transactions no longer exist.
	History string `json:"history,omitempty"`

	cause *schemas.Error // of a refusal: the card or name opened no account
}

// identified is the account a request points at, and what the policy may know about it.
type identified struct {
	patronID string
	facts    policy.Facts
	evidence policy.Evidence
	patron   model.Patron
	refusal  *schemas.Error // why the card or name opens no account, if it does not
}

// Disclose decides a request for a patron's record under Policy 1002, records the
// decision on the access record, and returns the part of the record the decision allows.
// A refusal is recorded too and returned as a forbidden error naming the clause.
func (l *Ledger) Disclose(ctx context.Context, req DiscloseRequest) (Disclosed, error) {
	if req.Action == "" {
		req.Action = "lookup"
	}
	now := l.cfg.Now()
	var (
		out Disclosed
		who identified
		dec policy.Decision
	)
	err := l.withView(func(v view) error {
		var err error
		if who, err = v.identify(req); err != nil {
			return err
		}
		dec = policy.Decide(policy.Request{
			Role: req.By.Role, Basis: req.Basis, Evidence: who.evidence, Facts: who.facts,
			At: now, Location: l.cfg.Location,
		})
		if !dec.Allowed() {
			return nil
		}
		if who.patronID == "" {
			// Allowed, but no open account to read: never read the record of nobody.
			dec = policy.Decision{Scope: policy.Refused, Clause: dec.Clause, Reason: "The account is closed: it has no current record."}
			return nil
		}
		rec, err := v.record(who.patronID)
		if err != nil {
			return err
		}
		switch dec.Scope {
		case policy.Limited:
			rec = policy.Limit(rec)
		case policy.CurrentRecord:
		default:
			return fmt.Errorf("scope %q is not a record scope", dec.Scope)
		}
		out = Disclosed{Basis: req.Basis, Scope: dec.Scope, Clause: dec.Clause, PatronID: who.patronID, Record: rec}
		if req.Basis == policy.CourtOrder {
			out.History = policy.NoHistory
		}
		return nil
	})
	entry := Disclosure{At: now, By: req.By, Action: req.Action, Basis: req.Basis, Scope: dec.Scope,
		Clause: dec.Clause.ID, OrderRef: strings.TrimSpace(req.OrderRef)}
	if who.patronID != "" {
		entry.Patrons = []string{who.patronID}
	}
	if err != nil {
		// Every outcome is recorded, a failure too: the request reached a disclosing
		// route and nothing was disclosed.
		entry.Scope = policy.Refused
		if entry.Clause == "" {
			entry.Clause = policy.ClauseConfidentiality
		}
		if rerr := l.RecordAccess(ctx, entry); rerr != nil {
			return Disclosed{}, rerr
		}
		return Disclosed{}, err
	}
	// A card that opens no account at a kiosk discloses nothing about anyone; the kiosk
	// server counts such misses and records them as one summary entry per window, so that
	// guessing cards neither floods the append-only record nor goes unrecorded.
	kioskMiss := req.By.Role == policy.Kiosk && who.patronID == "" && who.refusal != nil
	if !kioskMiss {
		if err := l.RecordAccess(ctx, entry); err != nil {
			return Disclosed{}, err
		}
	}
	if !dec.Allowed() {
		reason := dec.Reason
		if who.refusal != nil {
			reason = who.refusal.Message
		}
		return Disclosed{Basis: req.Basis, Scope: policy.Refused, Clause: dec.Clause, cause: who.refusal},
			schemas.Errorf(schemas.CodeForbidden, "refused under Policy 1002 (%s): %s", dec.Clause.ID, reason)
	}
	return out, nil
}

// kioskPatronInfo is a kiosk's patron_info: the card presented at a self-checkout station,
// decided and recorded like any other disclosure.
func (l *Ledger) kioskPatronInfo(ctx context.Context, at Station, card string) (schemas.PatronRecord, error) {
	if at.Kind != "kiosk" {
		return schemas.PatronRecord{}, schemas.Errorf(schemas.CodeInvalid, "patron_info is a kiosk command; staff look up records with a stated basis")
	}
	d, err := l.Disclose(ctx, DiscloseRequest{
		By:     Requester{Name: "kiosk " + at.Branch + "/" + at.ID, Role: policy.Kiosk},
		Action: "patron_info", Basis: policy.Card, Card: card,
	})
	if d.cause != nil {
		// A patron at a kiosk is told why the card opens nothing, in the kiosk's codes.
		return schemas.PatronRecord{}, d.cause
	}
	if err != nil {
		return schemas.PatronRecord{}, err
	}
	return d.Record, nil
}

// identify finds the account a request points at and gathers the facts and evidence the
// policy decides on. An account that cannot be identified is not an error: the request is
// refused, and the refusal recorded.
func (l view) identify(req DiscloseRequest) (identified, error) {
	ev := policy.Evidence{
		PhotoIDChecked: req.PhotoIDChecked, BirthDate: strings.TrimSpace(req.BirthDate),
		CaregiverName: req.CaregiverName, OrderRef: req.OrderRef,
	}
	var who identified
	switch {
	case strings.TrimSpace(req.Card) != "":
		c, err := l.st.Card(l.keys.CardHash(req.Card))
		if errors.Is(err, model.ErrNotFound) {
			who.refusal = ErrUnknownCard
			break
		} else if err != nil {
			return identified{}, err
		}
		ev.CardPresented, ev.CardLost = true, c.Lost
		if c.Closed {
			who.refusal = errAccountClosed
			who.facts = policy.Facts{Found: true, AccountClosed: true}
			break
		}
		if c.Lost {
			who.refusal = ErrCardLost
		}
		who.patronID = c.PatronID
	case strings.TrimSpace(req.Name) != "":
		id, refusal, err := l.byName(req)
		if err != nil {
			return identified{}, err
		}
		who.patronID, who.refusal = id, refusal
	default:
		who.refusal = errNoOne
	}
	who.evidence = ev
	if who.patronID == "" {
		return who, nil
	}
	p, err := l.st.Patron(who.patronID)
	if errors.Is(err, model.ErrNotFound) {
		return identified{evidence: ev, refusal: errUnknownPatron}, nil
	} else if err != nil {
		return identified{}, err
	}
	profile, err := seal.OpenProfile(l.keys, p.ID, p.Profile)
	if errors.Is(err, keystore.ErrNotFound) {
		// Closed between the rows: nothing left to disclose.
		return identified{evidence: ev, facts: policy.Facts{Found: true, AccountClosed: true}, refusal: errAccountClosed}, nil
	} else if err != nil {
		return identified{}, err
	}
	who.patron = p
	who.facts = policy.Facts{Found: true, AccountClosed: p.Closed, BirthDate: profile.BirthDate}
	if profile.Caregiver != nil {
		who.facts.CaregiverName = profile.Caregiver.Name
	}
	return who, nil
}

// byName finds one open account by the name on a photo ID. Accounts that share the name
// are told apart by the date of birth given, or, for a caregiver, by the caregiver's name.
func (l view) byName(req DiscloseRequest) (id string, refusal *schemas.Error, err error) {
	ids, err := l.st.PatronsByName(l.keys.NameHash(req.Name))
	if err != nil {
		return "", nil, err
	}
	if len(ids) == 0 {
		return "", errNoSuchName, nil
	}
	if len(ids) == 1 {
		return ids[0], nil, nil
	}
	var match []string
	for _, id := range ids {
		p, err := l.st.Patron(id)
		if err != nil {
			return "", nil, err
		}
		profile, err := seal.OpenProfile(l.keys, id, p.Profile)
		if errors.Is(err, keystore.ErrNotFound) {
			continue
		} else if err != nil {
			return "", nil, err
		}
		switch {
		case strings.TrimSpace(req.BirthDate) != "":
			if profile.BirthDate == strings.TrimSpace(req.BirthDate) {
				match = append(match, id)
			}
		case req.Basis == policy.CaregiverPhotoID && profile.Caregiver != nil:
			if policy.SameName(profile.Caregiver.Name, req.CaregiverName) {
				match = append(match, id)
			}
		}
	}
	if len(match) != 1 {
		return "", errNameAmbiguous, nil
	}
	return match[0], nil, nil
}

// CollectionsRequest asks for the collections export: accounts to pursue for the recovery
// of materials and fines.
type CollectionsRequest struct {
	By             Requester
	MinOwedCents   int64 // an account owing at least this much is listed
	MinDaysOverdue int   // an account with an item at least this many days overdue is listed
}

// Debtor is one account in the collections export: only what recovery needs.
type Debtor struct {
	Name      string     `json:"name"`
	Email     string     `json:"email,omitempty"`
	Phone     string     `json:"phone,omitempty"`
	Address   string     `json:"address,omitempty"`
	Caregiver string     `json:"caregiver,omitempty"` // for a cardholder under 18: the caregiver to contact
	Contact   string     `json:"caregiver_contact,omitempty"`
	Items     []DebtItem `json:"items"`
	OwedCents int64      `json:"owed_cents"`
}

// DebtItem is an item to recover, or a charge for one.
type DebtItem struct {
	Barcode     string    `json:"barcode,omitempty"`
	Title       string    `json:"title,omitempty"`
	Status      string    `json:"status"` // "overdue" (on loan past due), "fine" (returned late), "lost", "damaged" or "fee"
	Due         time.Time `json:"due,omitzero"`
	DaysOverdue int       `json:"days_overdue,omitempty"`
	OwedCents   int64     `json:"owed_cents"`
}

// Collections is the collections export, decided by the policy's recovery clause and
// recorded as one access entry naming every account listed.
func (l *Ledger) Collections(ctx context.Context, req CollectionsRequest) ([]Debtor, policy.Decision, error) {
	now := l.cfg.Now()
	dec := policy.Decide(policy.Request{Role: req.By.Role, Basis: policy.Collections, At: now, Location: l.cfg.Location})
	entry := Disclosure{At: now, By: req.By, Action: "collections_export", Basis: policy.Collections,
		Scope: dec.Scope, Clause: dec.Clause.ID}
	if !dec.Allowed() {
		if err := l.RecordAccess(ctx, entry); err != nil {
			return nil, dec, err
		}
		return nil, dec, schemas.Errorf(schemas.CodeForbidden, "refused under Policy 1002 (%s): %s", dec.Clause.ID, dec.Reason)
	}
	type owing struct {
		patron model.Patron
		debts  Debtor
	}
	var (
		debtors []Debtor
		ids     []string
		found   []owing
	)
	err := l.withView(func(v view) error {
		byPatron := map[string][]model.Txn{}
		err := v.st.EachTxn(func(t model.Txn) error {
			if t.PatronID != "" {
				byPatron[t.PatronID] = append(byPatron[t.PatronID], t)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for id, txns := range byPatron {
			d, ok, err := v.debts(txns, now, req)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			p, err := v.st.Patron(id)
			if err != nil {
				return err
			}
			found = append(found, owing{p, d})
		}
		return nil
	})
	if err != nil {
		return nil, dec, err
	}
	// Profiles are opened once the view is released: a scan that decrypts every debtor's
	// profile must not hold up the projector and every decision.
	for _, o := range found {
		d, ok, err := l.contact(o.patron, o.debts, now)
		if err != nil {
			return nil, dec, err
		}
		if ok {
			debtors = append(debtors, d)
			ids = append(ids, o.patron.ID)
		}
	}
	entry.Patrons = ids
	if err := l.RecordAccess(ctx, entry); err != nil {
		return nil, dec, err
	}
	slices.SortFunc(debtors, func(a, b Debtor) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return int(b.OwedCents - a.OwedCents)
	})
	return debtors, dec, nil
}

// debts builds an account's collections row without its contact details, and reports
// whether it meets the thresholds.
func (l view) debts(txns []model.Txn, now time.Time, req CollectionsRequest) (Debtor, bool, error) {
	var (
		d         = Debtor{Items: []DebtItem{}}
		longest   int
		recovered bool // something is to recover: an overdue or lost item, or a charge
	)
	title := func(barcode string) string {
		if barcode == "" {
			return ""
		}
		if it, err := l.st.Item(barcode); err == nil {
			return it.Title
		}
		return ""
	}
	for _, t := range txns {
		if t.Loan == model.LoanOpen && now.After(t.Due) {
			days := int(now.Sub(t.Due) / l.cfg.Rules.Day)
			accrued := l.cfg.Rules.OverdueFine(t.Due, now)
			d.Items = append(d.Items, DebtItem{Barcode: t.Barcode, Title: title(t.Barcode), Status: "overdue", Due: t.Due, DaysOverdue: days, OwedCents: accrued})
			d.OwedCents += accrued
			longest = max(longest, days)
			recovered = true
		}
		for _, f := range t.Fines {
			if f.RemainingCents <= 0 {
				continue
			}
			status := f.Reason
			if status == schemas.ReasonOverdue {
				// The item is back (an item still out is listed above, with its due date):
				// what is owed is the fine for its late return.
				status = "fine"
			}
			d.Items = append(d.Items, DebtItem{Barcode: t.Barcode, Title: title(t.Barcode), Status: status, OwedCents: f.RemainingCents})
			d.OwedCents += f.RemainingCents
			recovered = true
		}
	}
	if !recovered || (d.OwedCents < req.MinOwedCents && longest < req.MinDaysOverdue) {
		return Debtor{}, false, nil
	}
	return d, true, nil
}

// contact completes a collections row with what recovery needs from the profile. It
// reports false for an account whose profile key is gone (closed meanwhile).
func (l *Ledger) contact(p model.Patron, d Debtor, now time.Time) (Debtor, bool, error) {
	profile, err := seal.OpenProfile(l.keys, p.ID, p.Profile)
	if errors.Is(err, keystore.ErrNotFound) {
		return Debtor{}, false, nil
	} else if err != nil {
		return Debtor{}, false, err
	}
	d.Name, d.Email, d.Phone, d.Address = profile.Name, profile.Email, profile.Phone, profile.Address
	if age, err := profile.AgeAt(now, l.cfg.Location); err == nil && age < 18 && profile.Caregiver != nil {
		d.Caregiver, d.Contact = profile.Caregiver.Name, profile.Caregiver.Contact
	}
	return d, true, nil
}

// CommandPatron is the patron a staff command concerns, for the access record: by the card
// it presents (card reports true), the patron it names, or the fine it settles. "" when
// the command names nobody known.
func (l *Ledger) CommandPatron(name string, raw []byte) (patronID string, card bool) {
	var c struct {
		Card     string `json:"card"`
		PatronID string `json:"patron_id"`
		FineID   string `json:"fine_id"`
	}
	// Checked against the command's schema first: plain json.Unmarshal matches names
	// case-insensitively and keeps the last of repeated ones, so an unchecked body could
	// name one patron here and another to the command.
	if l.v.Command(name, raw) != nil || json.Unmarshal(raw, &c) != nil {
		return "", false
	}
	_ = l.withView(func(v view) error {
		switch {
		case c.Card != "" && name != schemas.CmdIssueCard:
			card = true
			if row, err := v.st.Card(l.keys.CardHash(c.Card)); err == nil {
				patronID = row.PatronID
			}
		case c.PatronID != "":
			if _, err := v.st.Patron(c.PatronID); err == nil {
				patronID = c.PatronID
			}
		case c.FineID != "":
			if txn, err := v.st.FineTxn(c.FineID); err == nil {
				if t, err := v.st.Txn(txn); err == nil {
					patronID = t.PatronID
				}
			}
		}
		return nil
	})
	return patronID, card
}
