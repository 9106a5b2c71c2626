package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/imagineif/lethe/access"
)

// cmdAccessLog prints the access record of a running server, as an administrator.
func cmdAccessLog(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("access-log", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	staffName := f.String("staff", "", "only entries of this staff account")
	from := f.String("from", "", "only entries on or after this day, YYYY-MM-DD")
	to := f.String("to", "", "only entries on or before this day, YYYY-MM-DD")
	patron := f.String("patron", "", "only entries about this open account (its internal id)")
	format := f.String("format", "table", "table or json")
	if err := f.parse(args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return &exitError{2, fmt.Errorf("--format must be table or json")}
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"staff": *staffName, "from": *from, "to": *to, "patron": *patron} {
		if v != "" {
			q.Set(k, v)
		}
	}
	out, err := c.send(ctx, http.MethodGet, "/api/access-log?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if *format == "json" {
		_, err := stdout.Write(out)
		return err
	}
	var entries []access.Listed
	if err := json.Unmarshal(out, &entries); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tSTAFF\tROLE\tACTION\tBASIS\tSCOPE\tCLAUSE\tORDER\tPATRONS")
	for _, e := range entries {
		if e.Outcome == access.Unreadable {
			// Nothing in it can be trusted; the reason is the last cell, outside the columns.
			fmt.Fprintf(tw, "%d\t%s: %s\n", e.Seq, access.Unreadable, e.Reason)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format("2006-01-02 15:04:05Z07:00"), e.Staff,
			e.Role, e.Action, dash(string(e.Basis)), e.Scope, e.Clause, dash(e.OrderRef), dash(strings.Join(e.Patrons, " ")))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
