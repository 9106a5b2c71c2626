package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/schemas"
	"github.com/imagineif/lethe/staff"
)

// client is a staff session with a running server's HTTP API, for the CLI.
type client struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags declares the flags of a command that talks to a running server as a staff
// account, and returns a function that logs in.
func clientFlags(f flags, stdin io.Reader, stderr io.Writer) func(ctx context.Context) (*client, error) {
	base := f.str("server", localURL(f.getenv, "LETHE_HTTP", "http", "LETHE_TLS_CERT", "https", "http://127.0.0.1:8080"),
		"the running lethe's HTTP address; by default the one LETHE_HTTP gives lethe serve")
	user := f.str("user", "", "staff account to act as")
	pwFile := f.str("password-file", "", "file holding the account's password; else LETHE_PASSWORD, else a prompt on a terminal")
	ca := f.str("ca-cert", "", "PEM certificate to trust for an https --server with a private certificate")
	return func(ctx context.Context) (*client, error) {
		if *user == "" {
			return nil, &exitError{2, errors.New("--user is required: the staff account to act as")}
		}
		password, err := clientPassword(*pwFile, f.getenv("LETHE_PASSWORD"), stdin, stderr)
		if err != nil {
			return nil, err
		}
		hc := &http.Client{}
		if *ca != "" {
			pem, err := os.ReadFile(*ca)
			if err != nil {
				return nil, fmt.Errorf("--ca-cert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("--ca-cert holds no PEM certificate")
			}
			hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
		var c *client
		err = untilStarted(ctx, stderr, *base, func() (err error) {
			c, err = login(ctx, hc, strings.TrimRight(*base, "/"), *user, password)
			return err
		}, httpStarting)
		return c, err
	}
}

// clientPassword reads the password from a file, the environment or a terminal prompt.
func clientPassword(file, env string, stdin io.Reader, stderr io.Writer) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case env != "":
		return env, nil
	}
	if in, ok := stdin.(*os.File); ok && termFD(in) {
		return readSecret(in, stderr, "Password: ")
	}
	return "", &exitError{2, errors.New("no password: use --password-file, LETHE_PASSWORD or run on a terminal")}
}

func login(ctx context.Context, hc *http.Client, base, user, password string) (*client, error) {
	c := &client{base: base, http: hc}
	body, _ := json.Marshal(map[string]string{"name": user, "password": password})
	out, err := c.send(ctx, http.MethodPost, "/api/login", body)
	if err != nil {
		return nil, fmt.Errorf("log in as %s: %w", user, err)
	}
	var r struct {
		Result staff.SessionInfo `json:"result"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Result.Token == "" {
		return nil, errors.New("log in: the server sent no session token")
	}
	c.token = r.Result.Token
	return c, nil
}

// send makes one request and returns the body of a 200 answer, or the coded error.
func (c *client) send(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(staff.ClientHeader, "cli")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach lethe at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error schemas.Error `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error.Code != "" {
			return nil, &e.Error
		}
		return nil, fmt.Errorf("lethe answered %s", resp.Status)
	}
	return out, nil
}

// command sends one staff command. A command id is added when the JSON has none, so the
// server applies it once even if this is retried.
func (c *client) command(ctx context.Context, name string, body map[string]any) (json.RawMessage, error) {
	path := desk.CommandPath(name)
	if path == "" {
		return nil, &exitError{2, fmt.Errorf("%q is not a staff command; staff read patron records with POST /api/patrons/lookup", name)}
	}
	if _, ok := body["command_id"]; !ok {
		body["command_id"] = uuid.NewString()
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, http.MethodPost, path, raw)
}
