// Package policy is ImagineIF Libraries' Policy 1002, Confidentiality of Library Records,
// as a pure decision: who may see which part of a patron's record, on which basis.
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

// StaffRoles are the roles a staff account can have.
var StaffRoles = []Role{Circulation, Administrator, Auditor}

// Valid reports whether r is a staff role.
func (r Role) Valid() bool {
	for _, s := range StaffRoles {
		if r == s {
			return true
		}
	}
	return false
}
