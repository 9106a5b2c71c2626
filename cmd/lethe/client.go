package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/google/uuid"
	"github.com/imagineif/lethe/schemas"
)

// postCommand sends one staff command to a running server's HTTP API. A command id is
// added when the JSON has none, so the server applies it once even if this is retried.
func postCommand(ctx context.Context, base, name string, body map[string]any) (json.RawMessage, error) {
	if name != schemas.CmdPatronInfo {
		if _, ok := body["command_id"]; !ok {
			body["command_id"] = uuid.NewString()
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/commands/"+name, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach lethe at %s: %w", base, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
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
