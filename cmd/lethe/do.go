package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

func cmdDo(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("do", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() < 1 || f.NArg() > 2 {
		return &exitError{2, errors.New("usage: lethe do COMMAND [JSON]   (JSON from stdin when omitted)")}
	}
	var raw []byte
	if f.NArg() == 2 {
		raw = []byte(f.Arg(1))
	} else {
		var err error
		if raw, err = io.ReadAll(io.LimitReader(stdin, 1<<20)); err != nil {
			return err
		}
	}
	body := map[string]any{}
	if err := json.Unmarshal(raw, &body); err != nil {
		return &exitError{2, fmt.Errorf("the command must be a JSON object: %w", err)}
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	out, err := c.command(ctx, f.Arg(0), body)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
