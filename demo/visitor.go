package demo

import (
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/staff"
)

// User is the demo's administrator.
const User = "demo"

// Account gives the demo an administrator with a fresh random password, so a newcomer
// can sign in to the dashboard and try the staff API. Only the demo does this: a real
// server has no account until 'lethe staff add' makes one.
func Account(data string) (string, error) {
	b := make([]byte, 12)
	if _, err := crand.Read(b); err != nil {
		return "", err
	}
	password := base64.RawURLEncoding.EncodeToString(b)
	st, err := staff.Open(filepath.Join(data, "staff"), nil)
	if err != nil {
		return "", err
	}
	err = st.Add(User, policy.Administrator, password)
	if errors.Is(err, staff.ErrExists) {
		err = st.SetPassword(User, password)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return password, err
}

// VisitorKiosk makes kiosk main/visitor in the demo's data directory and writes its
// credentials file there, for a NATS server at url; it returns the file's path.
func VisitorKiosk(s *node.Service, data, url string) (string, error) {
	id, seed, err := identity.Open(data).Add(identity.Kiosk, "main", "visitor", time.Now())
	if err != nil {
		return "", err
	}
	path := filepath.Join(data, "visitor.nk")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	err = identity.WriteCredentials(f, id, seed, url)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return path, s.ReloadIdentities()
}
