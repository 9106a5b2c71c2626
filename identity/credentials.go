package identity

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nkeys"
)

// WriteCredentials writes the credentials file of an identity: the NKey seed in the
// decorated form NATS tools read (`nats --nkey FILE`, nats.go's NkeyOptionFromSeed, and
// the NKey options of the other NATS client libraries), preceded by comment lines that
// say what it is and how to use it. url is the server kiosks and auditors reach, or "".
func WriteCredentials(w io.Writer, id Identity, seed []byte, url string) error {
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Lethe NATS credentials: %s (NKey %s)\n", id.Label(), id.PublicKey)
	if id.Kind == Kiosk {
		fmt.Fprintf(&b, "%s%s/%s\n", kioskLine, id.Branch, id.Name)
	}
	fmt.Fprintf(&b, "# Keep this file secret: it is the only copy of the key. Lethe stores the public key only.\n")
	switch id.Kind {
	case Kiosk:
		fmt.Fprintf(&b, "# This kiosk may send requests on %s and nothing else.\n", id.Imports()[0].Subject)
		fmt.Fprintf(&b, "#   lethe kiosk --nats-creds THIS_FILE --nats-url %s info CARD\n", url)
		fmt.Fprintf(&b, "#   nats --server %s --nkey THIS_FILE req %s '{\"card\":\"…\"}'\n", url, strings.TrimSuffix(id.Imports()[0].Subject, ">")+"patron_info")
	case Auditor:
		fmt.Fprintf(&b, "# This auditor may read the CIRC stream and nothing else.\n")
		fmt.Fprintf(&b, "#   lethe audit replay --nats-creds THIS_FILE --nats-url %s\n", url)
	}
	fmt.Fprintf(&b, "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n", seed)
	_, err := w.Write(b.Bytes())
	return err
}

// kioskLine starts the comment line that names a kiosk credentials file's kiosk, so that
// `lethe kiosk` knows which subjects to use. NATS tools ignore comment lines.
const kioskLine = "# lethe-kiosk: "

// KioskOf returns the branch and kiosk a kiosk credentials file names, if it names one.
func KioskOf(contents []byte) (branch, kiosk string, ok bool) {
	for _, line := range strings.Split(string(contents), "\n") {
		if rest, found := strings.CutPrefix(strings.TrimSpace(line), strings.TrimSpace(kioskLine)); found {
			branch, kiosk, ok = strings.Cut(strings.TrimSpace(rest), "/")
			if ok && validate(Kiosk, branch, kiosk) == nil {
				return branch, kiosk, true
			}
		}
	}
	return "", "", false
}

// ReadCredentials returns the key pair in a credentials file's contents.
func ReadCredentials(contents []byte) (nkeys.KeyPair, error) {
	kp, err := nkeys.ParseDecoratedUserNKey(contents)
	if err != nil {
		return nil, fmt.Errorf("credentials file holds no NATS user seed: %w", err)
	}
	return kp, nil
}
