package main

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/staff"
)

// cmdClusterInit makes, on a stopped node's data directory, the first administrator and
// the kiosk and auditor identities a new cluster starts with, each only if it is not there
// yet, so that a container's init step can run it at every start. A container has no
// terminal to type a password on: the administrator's is generated, written to a file
// and printed once, as lethe demo prints its own.
func cmdClusterInit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("cluster init", getenv, stderr)
	data := f.str("data", "./lethe-data", "the data directory of the (stopped) node to make them in")
	secrets := f.String("secrets", "", "directory for the administrator's password file and the credentials files (made if missing)")
	admin := f.String("admin", "admin", "name of the first administrator; empty: none")
	kiosks := f.String("kiosks", "", "kiosk identities to make, BRANCH/KIOSK, comma-separated")
	auditors := f.String("auditors", "", "auditor identities to make, comma-separated")
	url := f.String("url", "", "the NATS URL kiosks and auditors use, written into their credentials files' comments")
	if err := f.parse(args); err != nil {
		return err
	}
	if len(f.Args()) > 0 {
		return &exitError{2, fmt.Errorf("unexpected argument %q", f.Arg(0))}
	}
	if *secrets == "" {
		return &exitError{2, errors.New("--secrets is required: the directory for the password and credentials files")}
	}
	if *admin != "" && !staff.ValidName(*admin) {
		return &exitError{2, fmt.Errorf("--admin: %s", staff.ErrBadName.Message)}
	}
	type want struct {
		kind         identity.Kind
		branch, name string
	}
	var ids []want
	for _, k := range splitList(*kiosks) {
		branch, name, ok := strings.Cut(k, "/")
		if !ok {
			return &exitError{2, fmt.Errorf("--kiosks: %q is not BRANCH/KIOSK", k)}
		}
		ids = append(ids, want{identity.Kiosk, branch, name})
	}
	for _, a := range splitList(*auditors) {
		ids = append(ids, want{identity.Auditor, "", a})
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(*secrets, 0o700); err != nil {
		return fmt.Errorf("--secrets: %w", err)
	}

	if *admin != "" {
		if err := initAdmin(*data, *secrets, *admin, stdout); err != nil {
			return err
		}
	}
	reg := identity.Open(*data)
	for _, w := range ids {
		if err := initIdentity(reg, *secrets, w.kind, w.branch, w.name, *url, stdout); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// initAdmin makes the administrator with a generated password, unless the account and
// its password file are both there already. One without the other is refused: the
// account's password is not in the file, or the file's is no account's.
func initAdmin(data, secrets, name string, stdout io.Writer) (err error) {
	pwFile := filepath.Join(secrets, name+".password")
	st, err := staff.Open(filepath.Join(data, "staff"), nil)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}()
	_, getErr := st.Get(name)
	_, statErr := os.Stat(pwFile)
	switch {
	case getErr == nil && statErr == nil:
		fmt.Fprintf(stdout, "administrator %s: already there (its password is in %s)\n", name, pwFile)
		return nil
	case getErr == nil:
		return fmt.Errorf("administrator %s exists but %s does not: set a password with 'lethe staff passwd %s' (server stopped)", name, pwFile, name)
	case !errors.Is(getErr, staff.ErrNotFound):
		return getErr
	case statErr == nil:
		return fmt.Errorf("%s exists but no administrator %s does: move the file away to make the account anew", pwFile, name)
	case !errors.Is(statErr, fs.ErrNotExist):
		return statErr
	}
	b := make([]byte, 18)
	if _, err := crand.Read(b); err != nil {
		return err
	}
	password := base64.RawURLEncoding.EncodeToString(b)
	if err := writeExclusive(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	if err := st.Add(name, policy.Administrator, password); err != nil {
		os.Remove(pwFile)
		return publicErr(err)
	}
	fmt.Fprintf(stdout, "administrator %s: added; sign in with password %s (shown once; also in %s)\n", name, password, pwFile)
	return nil
}

// initIdentity makes a kiosk or auditor identity with its credentials file, unless an
// active identity of that name and its file are both there already.
func initIdentity(reg *identity.Registry, secrets string, kind identity.Kind, branch, name, url string, stdout io.Writer) error {
	label := identity.Identity{Kind: kind, Branch: branch, Name: name}.Label()
	path := filepath.Join(secrets, name+".nk")
	if kind == identity.Kiosk {
		path = filepath.Join(secrets, branch+"-"+name+".nk")
	}
	active, err := reg.Active()
	if err != nil {
		return err
	}
	want := identity.Identity{Kind: kind, Branch: branch, Name: name}.Account()
	exists := slices.ContainsFunc(slices.Collect(maps.Values(active)), func(id identity.Identity) bool { return id.Account() == want })
	_, statErr := os.Stat(path)
	switch {
	case exists && statErr == nil:
		fmt.Fprintf(stdout, "%s: already there (credentials in %s)\n", label, path)
		return nil
	case exists:
		return fmt.Errorf("%s exists but %s does not: revoke it ('lethe %ss revoke') to make it anew", label, path, kind)
	case statErr == nil:
		return fmt.Errorf("%s exists but %s is not an active identity: move the file away to make it anew", path, label)
	case !errors.Is(statErr, fs.ErrNotExist):
		return statErr
	}
	id, seed, err := reg.Add(kind, branch, name, time.Now())
	if err != nil {
		return fmt.Errorf("add %s: %w", label, err)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = identity.WriteCredentials(fh, id, seed, url)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}
	if err != nil {
		_, _ = reg.Revoke(kind, branch, name, time.Now()) // an identity nobody holds the key of
		return fmt.Errorf("credentials file: %w", err)
	}
	fmt.Fprintf(stdout, "%s: added (NKey %s); credentials in %s\n", label, id.PublicKey, path)
	return nil
}
