package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

const staffUsage = `usage: lethe staff <command> [--data DIR]

  add NAME --role ROLE   create an account (ROLE: circulation, administrator or auditor)
  disable NAME           stop an account from logging in
  enable NAME            let a disabled account log in again
  passwd NAME            set an account's password
  list                   list the accounts

The server must be stopped: the staff store (<data>/staff) is locked while lethe serve
runs, and restarting it ends every session. Passwords are read twice without echo on a
terminal, otherwise as one line from standard input. There is no default account: create
the first administrator with 'lethe staff add NAME --role administrator'.
`

// cmdStaff manages staff accounts offline, in <data>/staff.
func cmdStaff(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, staffUsage)
		return &exitError{2, errors.New("no staff command given")}
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "add", "disable", "enable", "passwd", "list":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, staffUsage)
		return nil
	default:
		fmt.Fprint(stderr, staffUsage)
		return &exitError{2, fmt.Errorf("unknown staff command %q", sub)}
	}
	f := newFlags("staff "+sub, getenv, stderr)
	data := f.str("data", "./lethe-data", "data directory; the staff store is <data>/staff")
	role := new(string)
	if sub == "add" {
		role = f.String("role", "", "the account's role: circulation, administrator or auditor")
	}
	pos, err := parseInterleaved(f, rest)
	if err != nil {
		return err
	}
	var name string
	if sub != "list" {
		if len(pos) == 0 {
			return &exitError{2, fmt.Errorf("usage: lethe staff %s NAME [flags]", sub)}
		}
		name, pos = pos[0], pos[1:]
		if !staff.ValidName(name) {
			return &exitError{2, errors.New(staff.ErrBadName.Message)}
		}
	}
	if len(pos) > 0 {
		return &exitError{2, fmt.Errorf("unexpected argument %q", pos[0])}
	}
	if sub == "add" && !policy.Role(*role).Valid() {
		return &exitError{2, errors.New("--role must be circulation, administrator or auditor")}
	}

	st, err := staff.Open(filepath.Join(*data, "staff"), nil)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "add":
		// Refuse a taken name before asking for a password.
		if _, err := st.Get(name); err == nil {
			return publicErr(staff.ErrExists)
		}
		pw, err := readNewPassword(stdin, stderr, name)
		if err != nil {
			return err
		}
		if err := st.Add(name, policy.Role(*role), pw); err != nil {
			return publicErr(err)
		}
		fmt.Fprintf(stdout, "added %s (%s)\n", name, *role)
	case "passwd":
		if _, err := st.Get(name); err != nil {
			return publicErr(err)
		}
		pw, err := readNewPassword(stdin, stderr, name)
		if err != nil {
			return err
		}
		if err := st.SetPassword(name, pw); err != nil {
			return publicErr(err)
		}
		fmt.Fprintf(stdout, "changed the password of %s\n", name)
	case "disable":
		if err := st.Disable(name); err != nil {
			return publicErr(err)
		}
		fmt.Fprintf(stdout, "disabled %s: it cannot log in\n", name)
	case "enable":
		if err := st.Enable(name); err != nil {
			return publicErr(err)
		}
		fmt.Fprintf(stdout, "enabled %s\n", name)
	case "list":
		list, err := st.List()
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "no staff accounts; create the first administrator with: lethe staff add NAME --role administrator")
			break
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tSTATUS\tCREATED\tPASSWORD CHANGED")
		for _, a := range list {
			status := "enabled"
			if a.Disabled {
				status = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Role, status,
				a.Created.UTC().Format(time.RFC3339), a.PasswordChanged.UTC().Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := st.Close(); err != nil {
		return err
	}
	return ctx.Err()
}

// parseInterleaved parses flags and positional arguments in any order (Go's flag package
// stops at the first positional one), so that both 'add alice --role x' and
// 'add --role x alice' work. After "--" everything is positional.
func parseInterleaved(f flags, args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.parse(args); err != nil {
			return nil, err
		}
		rest := f.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// readNewPassword reads a new password for name: twice without echo when stdin is a
// terminal, otherwise one line from stdin (for scripts and tests). It never prints it.
func readNewPassword(stdin io.Reader, stderr io.Writer, name string) (string, error) {
	if in, ok := stdin.(*os.File); ok && termFD(in) {
		pw, err := readSecret(in, stderr, "New password for "+name+": ")
		if err != nil {
			return "", err
		}
		again, err := readSecret(in, stderr, "Again: ")
		if err != nil {
			return "", err
		}
		if pw != again {
			return "", errors.New("the two passwords differ; nothing was changed")
		}
		return pw, nil
	}
	line, err := readLine(stdin, 4096)
	if err != nil {
		return "", err
	}
	if line == "" {
		return "", errors.New("no password on standard input: give it as one line, or run on a terminal")
	}
	return line, nil
}

// readLine reads one line, byte by byte so that nothing after it is consumed, without
// its line ending.
func readLine(r io.Reader, max int) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			if len(b) == max {
				return "", fmt.Errorf("the password line is longer than %d bytes", max)
			}
			b = append(b, one[0])
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
	}
	return strings.TrimSuffix(string(b), "\r"), nil
}

// publicErr turns a coded staff error into its message alone: it is written for people.
func publicErr(err error) error {
	var e *schemas.Error
	if errors.As(err, &e) {
		return errors.New(e.Message)
	}
	return err
}
