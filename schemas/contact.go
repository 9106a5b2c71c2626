package schemas

import "slices"

// Contact details: the fields of a profile that update_contact sets or clears, by their
// names in the command and in its clear list. Wire names: append-only.
const (
	ContactEmail     = "email"
	ContactPhone     = "phone"
	ContactAddress   = "address"
	ContactCaregiver = "caregiver_contact" // the contact of the caregiver the account lists
)

// ContactFields lists the contact details, in the order of the profile.
func ContactFields() []string {
	return []string{ContactEmail, ContactPhone, ContactAddress, ContactCaregiver}
}

// ContactChange is a change to a patron's contact details: each field given is set, each
// one named in Clear is removed. It is the plaintext sealed as the contact of
// patron.contact_updated, and only ever exists in memory and in commands.
type ContactChange struct {
	Email            string   `json:"email,omitempty"`
	Phone            string   `json:"phone,omitempty"`
	Address          string   `json:"address,omitempty"`
	CaregiverContact string   `json:"caregiver_contact,omitempty"`
	Clear            []string `json:"clear,omitempty"`
}

// set returns the fields c sets, by name.
func (c ContactChange) set() map[string]string {
	m := map[string]string{}
	for name, v := range map[string]string{ContactEmail: c.Email, ContactPhone: c.Phone, ContactAddress: c.Address, ContactCaregiver: c.CaregiverContact} {
		if v != "" {
			m[name] = v
		}
	}
	return m
}

// Check refuses, as invalid, a change that changes nothing, that clears something other
// than a contact detail, or that both sets and clears one field. The command's schema
// refuses the first two shapes already; only Check sees the third. Its messages name
// fields, never values.
func (c ContactChange) Check() error {
	set := c.set()
	if len(set) == 0 && len(c.Clear) == 0 {
		return Errorf(CodeInvalid, "invalid update_contact: nothing to change: set or clear at least one of email, phone, address, caregiver_contact")
	}
	for _, f := range c.Clear {
		if !slices.Contains(ContactFields(), f) {
			return Errorf(CodeInvalid, "invalid update_contact: /clear names a field that is not a contact detail")
		}
		if _, ok := set[f]; ok {
			return Errorf(CodeInvalid, "invalid update_contact: %s is both set and cleared", f)
		}
	}
	return nil
}

// ChangesCaregiver reports whether c sets or clears the caregiver's contact, which only an
// account that lists a caregiver has.
func (c ContactChange) ChangesCaregiver() bool {
	return c.CaregiverContact != "" || slices.Contains(c.Clear, ContactCaregiver)
}

// Apply returns p with the change made; p itself is left as it was. The caregiver's
// contact changes only in a profile that lists a caregiver. Apply does not check c
// (Check does).
func (c ContactChange) Apply(p Profile) Profile {
	if p.Caregiver != nil {
		cg := *p.Caregiver
		p.Caregiver = &cg
	}
	for _, f := range c.Clear {
		switch f {
		case ContactEmail:
			p.Email = ""
		case ContactPhone:
			p.Phone = ""
		case ContactAddress:
			p.Address = ""
		case ContactCaregiver:
			if p.Caregiver != nil {
				p.Caregiver.Contact = ""
			}
		}
	}
	if c.Email != "" {
		p.Email = c.Email
	}
	if c.Phone != "" {
		p.Phone = c.Phone
	}
	if c.Address != "" {
		p.Address = c.Address
	}
	if c.CaregiverContact != "" && p.Caregiver != nil {
		p.Caregiver.Contact = c.CaregiverContact
	}
	return p
}

// Same reports whether c and d are one change: the same fields set to the same values, and
// the same fields cleared, in any order.
func (c ContactChange) Same(d ContactChange) bool {
	if c.Email != d.Email || c.Phone != d.Phone || c.Address != d.Address || c.CaregiverContact != d.CaregiverContact {
		return false
	}
	return slices.Equal(slices.Sorted(slices.Values(c.Clear)), slices.Sorted(slices.Values(d.Clear)))
}
