package staff

import (
	"strings"
	"testing"
)

func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, password string
		ok             bool
	}{
		{"alice", "elevenchars", false},
		{"alice", "twelve chars", true},
		{"alice", strings.Repeat("é", 11), false}, // 22 bytes, 11 characters
		{"alice", strings.Repeat("é", 12), true},
		{"alice", strings.Repeat("x", 256), true},
		{"alice", strings.Repeat("x", 257), false},
		{"alice.librarian", "alice.librarian", false},
		{"alice.librarian", "Alice.Librarian", false},
		{"alice", "\xff\xfe invalid utf-8", false},
	} {
		err := checkPassword(tc.name, tc.password)
		if (err == nil) != tc.ok {
			t.Errorf("checkPassword(%q, %q) = %v, want ok=%v", tc.name, tc.password, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), tc.password) {
			t.Errorf("checkPassword(%q, %q) = %v, which repeats the password", tc.name, tc.password, err)
		}
	}
}
