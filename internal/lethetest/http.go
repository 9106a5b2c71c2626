package lethetest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/schemas"
)

// Send makes one request with client, header given as name, value, name, value…, and
// returns the response (its body closed) and the body.
func Send(t testing.TB, client *http.Client, method, url string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(testkit.Context(t), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp, raw
}

// WantAPIError checks that a reply is exactly {"error":{"code":code,"message":…}} with the
// status of code.
func WantAPIError(t testing.TB, what string, resp *http.Response, body []byte, code schemas.Code) {
	t.Helper()
	var r map[string]json.RawMessage
	var e schemas.Error
	if resp.StatusCode != schemas.HTTPStatus(code) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
		json.Unmarshal(body, &r) != nil || len(r) != 1 || json.Unmarshal(r["error"], &e) != nil || e.Code != code || e.Message == "" {
		t.Errorf("%s = %d %q %.200s, want %d with {\"error\":{\"code\":%q,\"message\":…}}", what, resp.StatusCode,
			resp.Header.Get("Content-Type"), body, schemas.HTTPStatus(code), code)
	}
}

// WantUnauthenticated checks a refusal for want of a session (staff.Auth's envelope).
func WantUnauthenticated(t testing.TB, what string, resp *http.Response, body []byte) {
	t.Helper()
	var r schemas.Reply
	if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(body, &r) != nil || r.Error == nil || r.Error.Code != schemas.CodeUnauthenticated {
		t.Errorf("%s = %d %.200s, want 401 unauthenticated", what, resp.StatusCode, body)
	}
}
