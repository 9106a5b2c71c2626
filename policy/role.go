// Package policy is ImagineIF Libraries' Policy 1002, Confidentiality of Library Records,
// as a pure decision: who may see which part of a patron's record, on which basis.
//
// Decide answers a record lookup and Permit any other action; both cite the Clause that
// grants or refuses, quoted from the policy. Invariants: a decision depends only on its
// arguments (the caller passes the time and the library's time zone), anything the policy
// does not recognize is refused, and a decision's Reason never repeats a value from the
// request, so it is safe to log and to show.
package policy

// Role is what a staff account (or a self-service station) may do.
type Role string

// The roles.
const (
	Circulation   Role = "circulation"   // circulation staff at a desk
	Administrator Role = "administrator" // a library administrator: court orders, waivers, collections, the access record
	Auditor       Role = "auditor"       // reads anonymous data only: statistics, item status, the anonymous history
	Kiosk         Role = "kiosk"         // a self-checkout station: the card holder's own current record
)

// StaffRoles returns the roles a staff account can have: a fresh slice each time, so no
// importer can add a role that then validates.
func StaffRoles() []Role { return []Role{Circulation, Administrator, Auditor} }

// Valid reports whether r is a staff role.
func (r Role) Valid() bool {
	switch r {
	case Circulation, Administrator, Auditor:
		return true
	}
	return false
}

// known reports whether r is a role the policy knows: a staff role or a kiosk.
func (r Role) known() bool {
	switch r {
	case Circulation, Administrator, Auditor, Kiosk:
		return true
	}
	return false
}
