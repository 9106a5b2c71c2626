package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/imagineif/lethe/node"
)

// clusterFlags declares the flags that make serve a node of a cluster (docs/design.md
// §11) and returns the function that checks them into the configuration.
func clusterFlags(f flags) func(*node.ServiceConfig) error {
	name := f.str("cluster-name", "", "form a cluster of this name with the other nodes' embedded NATS servers (with --cluster-listen and --routes); empty: a single node")
	host, _ := os.Hostname()
	nodeName := f.str("cluster-node", host, "this node's name in the cluster, unique and the same at every start")
	listen := f.str("cluster-listen", "", "host:port of this node's route listener for the other nodes")
	routes := f.str("routes", "", "comma-separated nats://host:port of every node's route listener")
	cert := f.str("cluster-tls-cert", "", "PEM certificate of this node for its routes (needed off loopback)")
	key := f.str("cluster-tls-key", "", "PEM private key for --cluster-tls-cert")
	ca := f.str("cluster-tls-ca", "", "PEM certificate of the CA that signed every node's route certificate")
	rotation := f.str("kek-rotation", node.DefaultKEKRotation.String(), "how often a cluster ends its key-encryption epoch; a destroyed key is beyond every node within two of these")
	return func(cfg *node.ServiceConfig) error {
		d, err := time.ParseDuration(*rotation)
		if err != nil || d <= 0 {
			return errors.New("--kek-rotation must be a positive duration such as 1m")
		}
		cfg.KEKRotation = d
		if *name == "" {
			if *listen != "" || *routes != "" || *cert != "" {
				return errors.New("--cluster-listen, --routes and --cluster-tls-* need --cluster-name")
			}
			return nil
		}
		if cfg.NATSURL != "" {
			return errors.New("--cluster-name forms a cluster of embedded servers; --nats-url uses an external one: give one or the other")
		}
		if *nodeName == "" || strings.ContainsAny(*nodeName, " .*>\t") {
			return errors.New("--cluster-node must be a name without spaces or dots")
		}
		if *listen == "" || *routes == "" {
			return errors.New("--cluster-name needs --cluster-listen and --routes")
		}
		if (*cert == "") != (*key == "") || (*cert != "") != (*ca != "") {
			return errors.New("--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together")
		}
		var rs []string
		for r := range strings.SplitSeq(*routes, ",") {
			if r = strings.TrimSpace(r); r != "" {
				if !strings.HasPrefix(r, "nats://") && !strings.HasPrefix(r, "tls://") {
					return fmt.Errorf("--routes: %q is not a nats://host:port URL", r)
				}
				rs = append(rs, r)
			}
		}
		cfg.Cluster = node.ClusterConfig{Name: *name, Node: *nodeName, Listen: *listen, Routes: rs, TLSCert: *cert, TLSKey: *key, TLSCA: *ca}
		return nil
	}
}

// cmdClusterStatus prints a running node's view of its cluster, as an administrator or an
// auditor.
func cmdClusterStatus(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("cluster status", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	format := f.String("format", "table", "table or json")
	if err := f.parse(args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return &exitError{2, errors.New("--format must be table or json")}
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	out, err := c.send(ctx, http.MethodGet, "/api/cluster", nil)
	if err != nil {
		return err
	}
	if *format == "json" {
		_, err := stdout.Write(out)
		return err
	}
	var st node.ClusterStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return fmt.Errorf("the server's cluster status: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if st.Mode == "cluster" {
		fmt.Fprintf(tw, "cluster %s, answered by %s; JetStream meta leader %s\n", st.Cluster, st.Node, st.MetaLeader)
		fmt.Fprintf(tw, "key-encryption epoch %d since %s (this node holds %d); rotation every %s, erasure window %s, sweep every %s\n",
			st.Epoch, st.EpochSince.Format(time.RFC3339), st.NodeEpoch, st.KEKRotation, st.ErasureWindow, st.SweepInterval)
		if st.RotationOverdue {
			fmt.Fprintln(tw, "ROTATION OVERDUE: a member does not answer; bring it back or remove it (lethe cluster remove-node)")
		}
		fmt.Fprintln(tw, "\nNODE\tMEMBER\tMETA\tCURRENT\tOFFLINE\tLAST SEEN")
		for _, n := range st.Nodes {
			fmt.Fprintf(tw, "%s\t%t\t%s\t%t\t%t\t%s\n", n.Name, n.Member, map[bool]string{true: "leader"}[n.Leader], n.Current, n.Offline, n.Seen)
		}
		var singles []string
		for name, holder := range st.Leases {
			singles = append(singles, name+" on "+holder)
		}
		slices.Sort(singles)
		fmt.Fprintf(tw, "\nsingletons: %s\n", strings.Join(singles, ", "))
	} else {
		fmt.Fprintf(tw, "a single node; sweep every %s\n", st.SweepInterval)
	}
	fmt.Fprintln(tw, "\nSTREAM\tREPLICAS\tSYNC\tMESSAGES\tLEADER\tCOPIES")
	for _, s := range st.Streams {
		var copies []string
		for _, c := range s.Copies {
			state := "current"
			switch {
			case c.Offline:
				state = "offline"
			case !c.Current:
				state = fmt.Sprintf("behind %d", c.Lag)
			}
			copies = append(copies, c.Node+" "+state)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", s.Name, s.Replicas, s.Sync, s.Messages, s.Leader, strings.Join(copies, ", "))
	}
	return tw.Flush()
}

// cmdClusterRemove takes a stopped or lost node off the member list, as an administrator.
func cmdClusterRemove(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("cluster remove-node", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return &exitError{2, errors.New("usage: lethe cluster remove-node [flags] NODE")}
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	if _, err := c.send(ctx, http.MethodPost, "/api/cluster/nodes/"+url.PathEscape(f.Arg(0))+"/remove", nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s from the member list: the next key-encryption epoch leaves it out\n", f.Arg(0))
	return nil
}
