package policy

// Clause is one clause of Policy 1002: a stable id and the policy's own words.
type Clause struct {
	ID   string `json:"id"`   // stable, recorded on the access record; never renamed or reused
	Text string `json:"text"` // the sentence of Policy 1002, verbatim
}

// The clause ids. They are wire names: append-only, never renamed or reused.
const (
	ClauseCard             = "card"
	ClauseLostCard         = "lost-card"
	ClauseInPerson         = "in-person"
	ClauseCaregiverMinor   = "caregiver-minor"
	ClauseCaregiverCard    = "caregiver-card"
	ClauseCaregiverPhotoID = "caregiver-photo-id"
	ClauseCourtOrder       = "court-order"
	ClauseCollections      = "collections"
	ClauseConfidentiality  = "confidentiality"
	ClauseStatistics       = "statistics"
	ClauseFunction         = "function"
	ClauseEmployees        = "employees"
)

// The clauses, quoted from Policy 1002. Unexported so that no caller can change what a
// decision cites; Clauses returns copies.
var (
	clauseCard = Clause{ClauseCard, "Each customer has individual control over his or her library card, " +
		"and presentation of the card or card number permits the holder access to information about " +
		"the borrower’s current circulation record."}
	clauseLostCard = Clause{ClauseLostCard, "In order to ensure confidentiality, lost or stolen cards " +
		"should be reported to ImagineIF Libraries immediately."}
	clauseInPerson = Clause{ClauseInPerson, "Information about a borrower’s circulation record also may " +
		"be released to the borrower in person, upon presentation of photo ID and verification of date of birth."}
	clauseCaregiverMinor = Clause{ClauseCaregiverMinor, "If a library cardholder is under the age of 18, " +
		"the caregiver who signed for the child’s card may be given specific information regarding the " +
		"child’s record under the following circumstances."}
	clauseCaregiverCard = Clause{ClauseCaregiverCard, "If the caregiver is in possession of the child’s " +
		"card, they may be given any information in the child’s record."}
	clauseCaregiverPhotoID = Clause{ClauseCaregiverPhotoID, "If the child’s card is not present, " +
		"information will be provided to the caregiver listed on the library account upon presentation " +
		"of photo identification, and will be limited to materials that are overdue, lost or damaged, " +
		"or related to fines owed."}
	clauseCourtOrder = Clause{ClauseCourtOrder, "In compliance with the Montana Records Confidentiality " +
		"Act (MCA 22-1-1101, 1103-1111), no information will be released to any person, agency or " +
		"organization except in response to a valid court order or subpoena, properly presented to a " +
		"library administrator, or in the recovery of library materials and fines."}
	// The release itself is the Montana sentence's last exception, "or in the recovery of
	// library materials and fines"; these two sentences say what collections may keep and who
	// may do it.
	clauseCollections = Clause{ClauseCollections, "Once borrowing transactions are complete, information " +
		"linking individuals and items is automatically expunged except for the purposes of fine and/or " +
		"materials collection. ImagineIF Libraries may use third-party agencies to recover materials from borrowers."}
	clauseConfidentiality = Clause{ClauseConfidentiality, "Confidentiality of library use is essential to ensure " +
		"citizens’ freedom to access information."}
	// "to not" is the policy's own typo, kept because the text is quoted verbatim.
	clauseStatistics = Clause{ClauseStatistics, "Aggregate statistics about library programming, " +
		"computer use, materials circulation and other services are collected and reviewed in order to " +
		"improve and expand library services; these statistics to not contain personally identifying information."}
	clauseFunction = Clause{ClauseFunction, "Information about individuals’ borrowing history, computer " +
		"use or other library use will not be kept by ImagineIF, except as necessary for the library to function."}
	clauseEmployees = Clause{ClauseEmployees, "Any employee or volunteer who discloses information in " +
		"violation of this policy commits an offense and may be subject to criminal prosecution."}
)

// Clauses lists every clause the package enforces, in the order their first sentences
// appear in the policy. Each call returns a new slice.
func Clauses() []Clause {
	return []Clause{
		clauseConfidentiality, clauseFunction, clauseCollections, clauseStatistics, clauseCard,
		clauseLostCard, clauseInPerson, clauseCaregiverMinor, clauseCaregiverCard,
		clauseCaregiverPhotoID, clauseCourtOrder, clauseEmployees,
	}
}
