package schemas

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestContactChangeCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		label string
		c     ContactChange
		want  string // "" for accepted
	}{
		{"set one", ContactChange{Email: markerEmail}, ""},
		{"clear one", ContactChange{Clear: []string{ContactPhone}}, ""},
		{"set and clear others", ContactChange{Email: markerEmail, Clear: []string{ContactPhone, ContactCaregiver}}, ""},
		{"nothing", ContactChange{}, "nothing to change"},
		{"set and cleared", ContactChange{Email: markerEmail, Phone: markerPhone, Clear: []string{ContactPhone}}, "phone is both set and cleared"},
		{"caregiver set and cleared", ContactChange{CaregiverContact: markerPhone, Clear: []string{ContactCaregiver}}, "caregiver_contact is both set and cleared"},
		{"clear the name", ContactChange{Clear: []string{"name"}}, "/clear names a field that is not a contact detail"},
		{"clear a value", ContactChange{Clear: []string{markerEmail}}, "/clear names a field that is not a contact detail"},
	} {
		err := tc.c.Check()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: Check(%+v) = %v, want nil", tc.label, tc.c, err)
			}
			continue
		}
		if CodeOf(err) != CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check(%+v) = %v, want invalid containing %q", tc.label, tc.c, err, tc.want)
		}
		if leak := leaked(err.Error(), nil); leak != "" {
			t.Errorf("%s: Check(%+v) = %v: echoes %q", tc.label, tc.c, err, leak)
		}
	}
}

func TestContactChangeApply(t *testing.T) {
	t.Parallel()
	minor := sampleProfile()
	adult := Profile{Name: markerName, Email: "old@example.org", Phone: "406-555-0100", BirthDate: "1970-01-01"}
	for _, tc := range []struct {
		label string
		p     Profile
		c     ContactChange
		want  Profile
	}{
		{"set email and address", adult, ContactChange{Email: markerEmail, Address: markerAddr},
			Profile{Name: markerName, Email: markerEmail, Phone: "406-555-0100", Address: markerAddr, BirthDate: "1970-01-01"}},
		{"clear phone", adult, ContactChange{Clear: []string{ContactPhone}},
			Profile{Name: markerName, Email: "old@example.org", BirthDate: "1970-01-01"}},
		{"clear what is not there", adult, ContactChange{Clear: []string{ContactAddress}}, adult},
		{"caregiver contact set", minor, ContactChange{CaregiverContact: "406-555-0177"},
			Profile{Name: markerName, Email: markerEmail, Phone: markerPhone, Address: markerAddr, BirthDate: markerBirth,
				Caregiver: &Caregiver{Name: markerCare, Contact: "406-555-0177"}}},
		{"caregiver contact cleared", minor, ContactChange{Clear: []string{ContactCaregiver, ContactEmail}},
			Profile{Name: markerName, Phone: markerPhone, Address: markerAddr, BirthDate: markerBirth, Caregiver: &Caregiver{Name: markerCare}}},
		{"caregiver contact without a caregiver", adult, ContactChange{CaregiverContact: "406-555-0177"}, adult},
	} {
		before := tc.p
		var caregiver Caregiver
		if tc.p.Caregiver != nil {
			caregiver = *tc.p.Caregiver
		}
		got := tc.c.Apply(tc.p)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: Apply (-want +got):\n%s", tc.label, diff)
		}
		if diff := cmp.Diff(before, tc.p); diff != "" || (tc.p.Caregiver != nil && *tc.p.Caregiver != caregiver) {
			t.Errorf("%s: Apply changed the profile it was given", tc.label)
		}
	}
}

func TestContactChangeSame(t *testing.T) {
	t.Parallel()
	c := ContactChange{Email: markerEmail, Clear: []string{ContactPhone, ContactAddress}}
	for _, tc := range []struct {
		label string
		d     ContactChange
		want  bool
	}{
		{"identical", ContactChange{Email: markerEmail, Clear: []string{ContactPhone, ContactAddress}}, true},
		{"clear in another order", ContactChange{Email: markerEmail, Clear: []string{ContactAddress, ContactPhone}}, true},
		{"another email", ContactChange{Email: "other@example.org", Clear: []string{ContactPhone, ContactAddress}}, false},
		{"a phone too", ContactChange{Email: markerEmail, Phone: markerPhone, Clear: []string{ContactAddress}}, false},
		{"one clear fewer", ContactChange{Email: markerEmail, Clear: []string{ContactPhone}}, false},
		{"no clear", ContactChange{Email: markerEmail}, false},
	} {
		if got := c.Same(tc.d); got != tc.want {
			t.Errorf("%s: Same(%+v) = %v, want %v", tc.label, tc.d, got, tc.want)
		}
	}
	if !(ContactChange{Phone: markerPhone}).Same(ContactChange{Phone: markerPhone, Clear: []string{}}) {
		t.Error("Same: a nil clear and an empty one differ")
	}
}
