package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
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
