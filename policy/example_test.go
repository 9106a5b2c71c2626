package policy_test

import (
	"fmt"
	"time"

	"github.com/imagineif/lethe/policy"
)

// A caregiver without the child's card, the evening before the child turns 18 in Montana,
// then at midnight.
func ExampleDecide() {
	denver, err := time.LoadLocation("America/Denver")
	if err != nil {
		panic(err)
	}
	r := policy.Request{
		Role:     policy.Circulation,
		Basis:    policy.CaregiverPhotoID,
		Evidence: policy.Evidence{PhotoIDChecked: true, CaregiverName: "Dana Example"},
		Facts:    policy.Facts{Found: true, BirthDate: "2008-06-15", CaregiverName: "DANA  EXAMPLE"},
		At:       time.Date(2026, 6, 14, 23, 59, 0, 0, denver),
		Location: denver,
	}
	d := policy.Decide(r)
	fmt.Println(d.Scope, d.Clause.ID)

	r.At = time.Date(2026, 6, 15, 0, 0, 0, 0, denver)
	d = policy.Decide(r)
	fmt.Println(d.Scope, d.Clause.ID)
	fmt.Println(d.Reason)
	// Output:
	// limited caregiver-photo-id
	// refused caregiver-minor
	// The cardholder is 18 or older, so a caregiver may no longer see the record.
}

func ExamplePermit() {
	for _, role := range []policy.Role{policy.Circulation, policy.Administrator} {
		d := policy.Permit(role, policy.WaiveFine)
		fmt.Println(role, d.Allowed(), d.Reason)
	}
	// Output:
	// circulation false Only an administrator may do this.
	// administrator true Administrators manage fines, accounts and the catalog so the library can function.
}
