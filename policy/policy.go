package policy

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/imagineif/lethe/schemas"
)

// Scope is how much of a patron's record a decision releases.
type Scope string

// The scopes. They are wire names: append-only, never renamed or reused.
const (
	Refused           Scope = "refused"        // nothing
	CurrentRecord     Scope = "current_record" // open loans with due dates, open fines, amount owed, card status
	Limited           Scope = "limited"        // only items overdue, lost or damaged, and fines owed (see Limit)
	CollectionsFields Scope = "collections"    // name, contact, items overdue or lost, amounts owed
	// BackupCopy is every open record, written to a backup sealed to a key that is
	// destroyed when the backup's retention ends.
	BackupCopy Scope = "backup"
)

// NoHistory is the sentence a court-order reply carries: Lethe cannot disclose what it no
// longer has. From Policy 1002: "Once borrowing transactions are complete, information
// linking individuals and items is automatically expunged".
const NoHistory = "Closed transactions were expunged when they closed and cannot be disclosed; " +
	"this is the current record only."

// MaxOrderRef is the longest court order or subpoena reference accepted, in characters.
const MaxOrderRef = 200

// Evidence is what the requester presented, as recorded by staff (or by a kiosk).
type Evidence struct {
	CardPresented  bool   // a card number was presented and it is a card of this patron's account
	CardLost       bool   // the presented card has been reported lost or stolen
	PhotoIDChecked bool   // staff checked a photo ID
	BirthDate      string // YYYY-MM-DD as stated or read from the ID, for in-person release
	CaregiverName  string // the name on the caregiver's photo ID
	OrderRef       string // the court order's or subpoena's reference
}

// Facts is what the patron's record says, read by the caller; the policy sees nothing else.
type Facts struct {
	Found         bool   // the patron's account was identified
	AccountClosed bool   // the account is closed
	BirthDate     string // YYYY-MM-DD, from the (decrypted) profile
	CaregiverName string // the caregiver listed on the account, "" if none
}

// Request is one request to see a patron's record (or, for Collections, the collections
// export).
type Request struct {
	Role     Role
	Basis    Basis
	Evidence Evidence
	Facts    Facts
	At       time.Time      // the moment of the request; the zero time is refused
	Location *time.Location // the library's time zone, where birthdays start; nil means UTC
}

// Decision is the policy's answer to a Request (or to Permit).
type Decision struct {
	Scope  Scope  `json:"scope"`
	Clause Clause `json:"clause"` // the clause that grants or refuses
	// Reason is one sentence for staff. It never carries a value from the request: no
	// name, birth date, card number, order reference, role or basis.
	Reason string `json:"reason"`
}

// Allowed reports whether the decision releases anything.
func (d Decision) Allowed() bool {
	switch d.Scope {
	case CurrentRecord, Limited, CollectionsFields:
		return true
	}
	return false
}

func refuse(c Clause, reason string) Decision { return Decision{Refused, c, reason} }

// Decide applies Policy 1002 to r. It is pure: the same request always gets the same
// decision, and nothing outside r is read.
func Decide(r Request) Decision {
	// Age is computed at the moment of the request (DESIGN.md §5): without it there is no
	// decision.
	if r.At.IsZero() {
		return refuse(clauseConfidentiality, "The time of the request is missing, so the policy cannot be applied.")
	}
	if !r.Role.known() {
		return refuse(clauseConfidentiality, "The role is not one the policy knows.")
	}
	if !r.Basis.Valid() {
		return refuse(clauseConfidentiality, "The basis is not one the policy allows.")
	}
	// "these statistics [do] not contain personally identifying information": auditors
	// read the anonymous data and nothing else, on any basis.
	if r.Role == Auditor {
		return refuse(clauseStatistics, "Auditors read anonymous data only, never a patron's record.")
	}
	switch r.Basis {
	case Card:
		return decideCard(r)
	case InPerson:
		return decideInPerson(r)
	case CaregiverWithCard:
		return decideCaregiverWithCard(r)
	case CaregiverPhotoID:
		return decideCaregiverPhotoID(r)
	case CourtOrder:
		return decideCourtOrder(r)
	default: // Collections
		return decideCollections(r)
	}
}

func noAccount() Decision { return refuse(clauseConfidentiality, "No account was identified.") }

// decideCard: "presentation of the card or card number permits the holder access to
// information about the borrower's current circulation record." Desk staff and kiosks.
func decideCard(r Request) Decision {
	if !r.Facts.Found {
		return noAccount()
	}
	if !r.Evidence.CardPresented {
		return refuse(clauseCard, "No card of this account was presented.")
	}
	if d, ok := cardWorks(r); !ok {
		return d
	}
	return Decision{CurrentRecord, clauseCard, "A card of the account was presented, so its current record may be shown."}
}

// cardWorks refuses a card that was reported lost or stolen ("lost or stolen cards should
// be reported ... immediately": a reported card opens nothing) and the card of a closed
// account.
func cardWorks(r Request) (Decision, bool) {
	if r.Evidence.CardLost {
		return refuse(clauseLostCard, "The card presented was reported lost or stolen, so it opens nothing."), false
	}
	if r.Facts.AccountClosed {
		return refuse(clauseCard, "The account is closed, so its card opens nothing."), false
	}
	return Decision{}, true
}

// desk reports whether the role is staff at a desk who can check a photo ID or identify a
// caregiver: circulation staff or an administrator.
func desk(r Role) bool { return r == Circulation || r == Administrator }

// decideInPerson: "Information about a borrower's circulation record also may be released
// to the borrower in person, upon presentation of photo ID and verification of date of
// birth."
func decideInPerson(r Request) Decision {
	if !desk(r.Role) {
		return refuse(clauseInPerson, "An in-person release needs desk staff to check a photo ID.")
	}
	if !r.Facts.Found {
		return noAccount()
	}
	if !r.Evidence.PhotoIDChecked {
		return refuse(clauseInPerson, "No photo ID was checked.")
	}
	given, err := parseDate(r.Evidence.BirthDate)
	if err != nil {
		return refuse(clauseInPerson, "The date of birth entered is not a date in the form YYYY-MM-DD.")
	}
	// A record without a usable birth date cannot verify anything; say so in the same words
	// as a mismatch, so the reason tells nothing about the record.
	recorded, err := parseDate(r.Facts.BirthDate)
	if err != nil || !given.Equal(recorded) {
		return refuse(clauseInPerson, "The date of birth given does not match the record.")
	}
	return Decision{CurrentRecord, clauseInPerson, "Photo ID was checked and the date of birth matches, so the current record may be shown."}
}

func parseDate(s string) (time.Time, error) {
	return time.Parse(time.DateOnly, strings.TrimSpace(s))
}

// minor checks the conditions every caregiver release shares: "If a library cardholder is
// under the age of 18, the caregiver who signed for the child's card may be given specific
// information". Age is taken at the moment of the request in the library's time zone, so
// the caregiver's rights end at local midnight starting the 18th birthday.
func minor(r Request) (Decision, bool) {
	if strings.TrimSpace(r.Facts.CaregiverName) == "" {
		return refuse(clauseCaregiverMinor, "The account lists no caregiver."), false
	}
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	age, err := schemas.Profile{BirthDate: strings.TrimSpace(r.Facts.BirthDate)}.AgeAt(r.At, loc)
	if err != nil || age < 0 {
		return refuse(clauseCaregiverMinor, "The record's date of birth is not usable, so the cardholder's age is unknown."), false
	}
	if age >= 18 {
		return refuse(clauseCaregiverMinor, "The cardholder is 18 or older, so a caregiver may no longer see the record."), false
	}
	return Decision{}, true
}

// decideCaregiverWithCard: "If the caregiver is in possession of the child's card, they
// may be given any information in the child's record."
func decideCaregiverWithCard(r Request) Decision {
	if !desk(r.Role) {
		return refuse(clauseCaregiverCard, "A caregiver is identified by desk staff; at a kiosk the card basis applies.")
	}
	if !r.Facts.Found {
		return noAccount()
	}
	if !r.Evidence.CardPresented {
		return refuse(clauseCaregiverCard, "The child's card was not presented.")
	}
	if d, ok := cardWorks(r); !ok {
		return d
	}
	if d, ok := minor(r); !ok {
		return d
	}
	return Decision{CurrentRecord, clauseCaregiverCard, "The caregiver of a cardholder under 18 holds the child's card, so the current record may be shown."}
}

// decideCaregiverPhotoID: "If the child's card is not present, information will be
// provided to the caregiver listed on the library account upon presentation of photo
// identification, and will be limited to materials that are overdue, lost or damaged, or
// related to fines owed."
func decideCaregiverPhotoID(r Request) Decision {
	if !desk(r.Role) {
		return refuse(clauseCaregiverPhotoID, "A caregiver's photo ID is checked by desk staff.")
	}
	if !r.Facts.Found {
		return noAccount()
	}
	if !r.Evidence.PhotoIDChecked {
		return refuse(clauseCaregiverPhotoID, "No photo ID was checked.")
	}
	if d, ok := minor(r); !ok {
		return d
	}
	if !SameName(r.Evidence.CaregiverName, r.Facts.CaregiverName) {
		return refuse(clauseCaregiverPhotoID, "The name on the photo ID is not the caregiver listed on the account.")
	}
	return Decision{Limited, clauseCaregiverPhotoID, "The listed caregiver showed photo ID without the child's card, so only overdue, lost or damaged items and fines owed may be shown."}
}

// SameName compares names ignoring case and runs of white space. An empty name matches
// nothing.
func SameName(a, b string) bool {
	a, b = strings.Join(strings.Fields(a), " "), strings.Join(strings.Fields(b), " ")
	return a != "" && strings.EqualFold(a, b)
}

// decideCourtOrder: "no information will be released to any person, agency or
// organization except in response to a valid court order or subpoena, properly presented
// to a library administrator". Closed history no longer exists, so the current record is
// all there is (the reply carries NoHistory).
func decideCourtOrder(r Request) Decision {
	if r.Role != Administrator {
		return refuse(clauseCourtOrder, "A court order or subpoena must be presented to a library administrator.")
	}
	if !r.Facts.Found {
		return noAccount()
	}
	if !validOrderRef(r.Evidence.OrderRef) {
		return refuse(clauseCourtOrder, "A court order or subpoena needs its reference, 1 to 200 printable characters.")
	}
	if r.Facts.AccountClosed {
		return refuse(clauseCourtOrder, "The account is closed: it has no current record, and its closed transactions were expunged, so there is nothing to release.")
	}
	return Decision{CurrentRecord, clauseCourtOrder, "A court order or subpoena was presented to an administrator, so the current record may be released."}
}

// validOrderRef reports whether ref can be recorded as the order's reference: not blank,
// at most MaxOrderRef characters, valid UTF-8 without control characters.
func validOrderRef(ref string) bool {
	ref = strings.TrimSpace(ref)
	if ref == "" || !utf8.ValidString(ref) || utf8.RuneCountInString(ref) > MaxOrderRef {
		return false
	}
	return strings.IndexFunc(ref, unicode.IsControl) < 0
}

// decideCollections: the release "in the recovery of library materials and fines", the
// only purpose for which a link outlives its transaction. It is the collections export,
// not one patron's record, so no account needs to be identified.
func decideCollections(r Request) Decision {
	if r.Role != Administrator {
		return refuse(clauseCollections, "Only an administrator may export for the recovery of materials and fines.")
	}
	return Decision{CollectionsFields, clauseCollections, "Recovery of materials and fines: the collections export's minimum fields may be released."}
}
