package staff

import (
	"strings"
	"unicode/utf8"

	"github.com/imagineif/lethe/schemas"
)

// Password hashes are argon2id PHC strings (package phc).

// The password policy, in characters (Unicode code points).
const (
	minPasswordChars = 12
	maxPasswordChars = 256
)

// checkPassword applies the password policy. Its errors never contain the password.
func checkPassword(name, password string) error {
	if !utf8.ValidString(password) {
		return schemas.Errorf(schemas.CodeInvalid, "a password must be valid UTF-8 text")
	}
	n := utf8.RuneCountInString(password)
	if n < minPasswordChars {
		return schemas.Errorf(schemas.CodeInvalid, "a password must be at least %d characters long", minPasswordChars)
	}
	if n > maxPasswordChars {
		return schemas.Errorf(schemas.CodeInvalid, "a password must be at most %d characters long", maxPasswordChars)
	}
	if strings.EqualFold(password, name) {
		return schemas.Errorf(schemas.CodeInvalid, "a password must not be the account name")
	}
	return nil
}
