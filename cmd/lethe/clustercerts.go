package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const clusterUsage = `usage: lethe cluster certs --out DIR --nodes NAME,NAME,... [--hosts NAME|IP,...] [--valid DURATION] [--ca-key FILE] [--existing-ok]
       lethe cluster init --data DIR --secrets DIR [--admin NAME] [--kiosks BRANCH/KIOSK,...] [--auditors NAME,...]
       lethe cluster status --server URL --user NAME [--format table|json]
       lethe cluster remove-node --server URL --user NAME NODE

status shows a running node's view of its cluster: the nodes on the member list and in
JetStream's meta group, every stream's and bucket's copies, the key-encryption epoch, the
erasure window and which node runs each singleton (administrators and auditors).
remove-node takes a stopped or lost node off the member list, so that the next epoch
leaves it out and rotations held by a member that no longer answers resume
(administrators).

certs makes a private certificate authority and, for each node, a certificate and key
that serve and verify every TLS listener of a cluster: routes between nodes (both ways),
NATS for kiosks and auditors, and HTTPS for staff. Each node's certificate names the
node, localhost, 127.0.0.1 and every --hosts entry. In DIR: ca.crt (give it to every node
as --cluster-tls-ca, and to clients as --ca-cert or --nats-ca), NODE.crt and NODE.key
(mode 0600) for each node. Nothing is overwritten: an existing file stops it before
anything is written; with --existing-ok, a whole set already there whose certificates
verify against its ca.crt is kept and the command succeeds (a container's second start).
The CA's private key is not kept unless --ca-key names a file for it (keep that offline:
whoever holds it can join the cluster).

init makes what a new cluster's first node needs before its first start, and leaves
what is already there: an administrator with a generated password (written to
<secrets>/<admin>.password, mode 0600, and printed once), and kiosk and auditor
identities with their credentials files in <secrets>. Run it on one node's data
directory while that node is stopped.
`

// cmdCluster dispatches the cluster subcommands.
func cmdCluster(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch {
	case len(args) > 0 && args[0] == "status":
		return cmdClusterStatus(ctx, args[1:], getenv, stdin, stdout, stderr)
	case len(args) > 0 && args[0] == "remove-node":
		return cmdClusterRemove(ctx, args[1:], getenv, stdin, stdout, stderr)
	case len(args) > 0 && args[0] == "certs":
		return cmdClusterCerts(ctx, args[1:], getenv, stdout, stderr)
	case len(args) > 0 && args[0] == "init":
		return cmdClusterInit(ctx, args[1:], getenv, stdout, stderr)
	case len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		fmt.Fprint(stdout, clusterUsage)
		return nil
	}
	fmt.Fprint(stderr, clusterUsage)
	return &exitError{2, errors.New("usage: lethe cluster certs|init|status|remove-node [flags]")}
}

// cmdClusterCerts writes a private CA and a certificate and key for each node.
func cmdClusterCerts(_ context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("cluster certs", getenv, stderr)
	out := f.String("out", "", "directory to write ca.crt and each node's NODE.crt and NODE.key into (made if missing)")
	nodes := f.String("nodes", "", "the nodes' names, comma-separated (each is a host name in its certificate)")
	hosts := f.String("hosts", "", "more host names or IP addresses every node's certificate names, comma-separated")
	valid := f.Duration("valid", 2*365*24*time.Hour, "how long the nodes' certificates are valid (the CA's: ten years)")
	caKey := f.String("ca-key", "", "also write the CA's private key to this file (mode 0600); by default it is discarded")
	existingOK := f.Bool("existing-ok", false, "when the whole set is in --out already and verifies against its ca.crt, keep it and succeed; a partial set is still refused")
	if err := f.parse(args); err != nil {
		return err
	}
	if len(f.Args()) > 0 {
		return &exitError{2, fmt.Errorf("unexpected argument %q", f.Arg(0))}
	}
	if *out == "" {
		return &exitError{2, errors.New("--out is required: the directory to write the certificates into")}
	}
	if *valid <= 0 {
		return &exitError{2, errors.New("--valid must be a positive duration")}
	}
	names, err := nodeNames(*nodes)
	if err != nil {
		return &exitError{2, err}
	}
	extra, err := certHosts(*hosts)
	if err != nil {
		return &exitError{2, err}
	}
	if *existingOK {
		switch kept, err := existingCerts(*out, names, *caKey); {
		case err != nil:
			return err
		case kept:
			fmt.Fprintf(stdout, "kept the certificates in %s: every node's verifies against its ca.crt\n", *out)
			return nil
		}
	}
	files, err := clusterCerts(names, extra, time.Now(), *valid)
	if err != nil {
		return err
	}
	paths := make([]string, len(files))
	for i, cf := range files {
		paths[i] = filepath.Join(*out, cf.name)
	}
	if *caKey != "" {
		paths = append(paths, *caKey)
		files = append(files, certFile{name: *caKey, data: files[0].caKey, secret: true})
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := writeNew(paths, files); err != nil {
		return err
	}
	for i, cf := range files {
		if cf.secret {
			fmt.Fprintf(stdout, "wrote %s (private key, mode 0600)\n", paths[i])
		} else {
			fmt.Fprintf(stdout, "wrote %s\n", paths[i])
		}
	}
	fmt.Fprintf(stdout, "each node: --cluster-tls-ca %[1]s --cluster-tls-cert %[2]s --cluster-tls-key %[3]s, and the same certificate and key for --nats-tls-cert/--nats-tls-key and --tls-cert/--tls-key\n",
		filepath.Join(*out, "ca.crt"), filepath.Join(*out, "NODE.crt"), filepath.Join(*out, "NODE.key"))
	return nil
}

// existingCerts reports whether the whole set for names is in dir (and caKey, if given),
// each node's certificate matching its key and verifying against dir's ca.crt for the
// node's name, for server and client. None of the files there is false; some of them is an
// error, as is a set that does not verify.
func existingCerts(dir string, names []string, caKey string) (bool, error) {
	paths := []string{filepath.Join(dir, "ca.crt")}
	for _, n := range names {
		paths = append(paths, filepath.Join(dir, n+".crt"), filepath.Join(dir, n+".key"))
	}
	if caKey != "" {
		paths = append(paths, caKey)
	}
	var there, missing []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			there = append(there, p)
		} else if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, p)
		} else {
			return false, err
		}
	}
	switch {
	case len(there) == 0:
		return false, nil
	case len(missing) > 0:
		return false, fmt.Errorf("%s exists but %s does not: a partial set is not kept (move it away to make a new one)", there[0], missing[0])
	}
	pem, err := os.ReadFile(paths[0])
	if err != nil {
		return false, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return false, fmt.Errorf("%s holds no PEM certificate", paths[0])
	}
	for _, n := range names {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, n+".crt"), filepath.Join(dir, n+".key"))
		if err != nil {
			return false, fmt.Errorf("the certificates in %s: %s: %w", dir, n, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return false, err
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: n, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				return false, fmt.Errorf("the certificates in %s: %s.crt does not verify against ca.crt: %w", dir, n, err)
			}
		}
	}
	return true, nil
}

// certFile is one file of a certificate set: its name in the output directory, its PEM
// contents, and whether it is a private key (written mode 0600).
type certFile struct {
	name   string
	data   []byte
	secret bool
	caKey  []byte // on the CA's certificate only: the CA's key, for --ca-key
}

// nodeNames parses --nodes: host names (DNS labels), distinct, at least one.
func nodeNames(s string) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !dnsLabel(n) || n == "ca" {
			return nil, fmt.Errorf("--nodes: %q is not a node name: use letters, digits and inner hyphens, at most 63 (and not \"ca\")", n)
		}
		if seen[strings.ToLower(n)] {
			return nil, fmt.Errorf("--nodes: %q is named twice", n)
		}
		seen[strings.ToLower(n)] = true
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, errors.New("--nodes is required: the nodes' names, such as lethe1,lethe2,lethe3")
	}
	return names, nil
}

// certHosts parses --hosts: IP addresses or DNS names.
func certHosts(s string) ([]string, error) {
	var hosts []string
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if net.ParseIP(h) == nil && !dnsName(h) {
			return nil, fmt.Errorf("--hosts: %q is neither an IP address nor a host name", h)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

func dnsLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func dnsName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !dnsLabel(l) {
			return false
		}
	}
	return true
}

// clusterCerts makes the CA and each node's certificate and key: ca.crt first, then
// NODE.crt and NODE.key in the order of names. Every node's certificate is for server
// and client authentication (routes are TLS both ways) and names the node, localhost,
// 127.0.0.1 and hosts.
func clusterCerts(names, hosts []string, now time.Time, valid time.Duration) ([]certFile, error) {
	caPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caSerial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: "Lethe cluster CA " + caSerial.Text(16)[:8], Organization: []string{"Lethe"}},
		NotBefore:             now.Add(-time.Hour), // a node whose clock is a little behind
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caPriv.PublicKey, caPriv)
	if err != nil {
		return nil, fmt.Errorf("make the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := keyPEM(caPriv)
	if err != nil {
		return nil, err
	}
	files := []certFile{{name: "ca.crt", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), caKey: caKeyPEM}}
	for _, n := range names {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		serial, err := serialNumber()
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: n, Organization: []string{"Lethe"}},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(valid),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:     []string{n, "localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &priv.PublicKey, caPriv)
		if err != nil {
			return nil, fmt.Errorf("make %s's certificate: %w", n, err)
		}
		k, err := keyPEM(priv)
		if err != nil {
			return nil, err
		}
		files = append(files,
			certFile{name: n + ".crt", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
			certFile{name: n + ".key", data: k, secret: true})
	}
	return files, nil
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeNew writes every file, none of which may exist: it checks them all first, then
// creates each exclusively, and removes what it wrote if one fails.
func writeNew(paths []string, files []certFile) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: lethe cluster certs never overwrites a file (choose another --out, or move the old set away)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	var written []string
	for i, cf := range files {
		mode := os.FileMode(0o644)
		if cf.secret {
			mode = 0o600
		}
		if err := writeExclusive(paths[i], cf.data, mode); err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return err
		}
		written = append(written, paths[i])
	}
	return nil
}

// writeExclusive creates path, which must not exist, with data, synced.
func writeExclusive(path string, data []byte, mode os.FileMode) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = fh.Write(data)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
