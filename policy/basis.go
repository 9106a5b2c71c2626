package policy

// Basis is the ground on which someone asks to see a patron's record: one of the ways
// Policy 1002 allows a release.
type Basis string

// The bases. They are wire names: append-only, never renamed or reused.
const (
	Card              Basis = "card"                // card or card number presented (kiosk or desk)
	InPerson          Basis = "in_person"           // borrower in person: photo ID checked and date of birth verified against the record
	CaregiverWithCard Basis = "caregiver_with_card" // caregiver of a cardholder under 18, holding the child's card
	CaregiverPhotoID  Basis = "caregiver_photo_id"  // caregiver without the child's card, with photo ID
	CourtOrder        Basis = "court_order"         // court order or subpoena, administrator only, order reference required
	Collections       Basis = "collections"         // recovery of library materials and fines (the collections export)
)

// Bases lists every basis, in the policy's order: a fresh slice each time.
func Bases() []Basis {
	return []Basis{Card, InPerson, CaregiverWithCard, CaregiverPhotoID, CourtOrder, Collections}
}

// Valid reports whether b is one of the bases.
func (b Basis) Valid() bool {
	switch b {
	case Card, InPerson, CaregiverWithCard, CaregiverPhotoID, CourtOrder, Collections:
		return true
	}
	return false
}
