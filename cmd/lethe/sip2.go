package main

import (
	"errors"
	"strconv"

	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/sip2"
)

// sip2Flags are the SIP2 gateway's settings of lethe serve.
func sip2Flags(f flags) func(*node.ServiceConfig) error {
	listen := f.str("sip2-listen", "off", "SIP2 listener for self-check machines, host:port, or 'off'; off loopback it needs --sip2-tls-cert")
	cert := f.str("sip2-tls-cert", "", "PEM certificate file: serve SIP2 over TLS (needed off loopback)")
	key := f.str("sip2-tls-key", "", "PEM private key file for --sip2-tls-cert")
	payments := f.str("sip2-allow-payments", "false", "let self-check machines pay fines (SIP2 37 fee paid)")
	requirePIN := f.str("sip2-require-pin", "false", "refuse SIP2 patron transactions without the patron's PIN (AD), and patrons who have none")
	delim := f.str("sip2-delimiter", "|", "the SIP2 field delimiter the machines are configured with")
	enc := f.str("sip2-encoding", string(sip2.UTF8), "the encoding of SIP2 replies: utf-8 or iso-8859-1 (requests are read as either)")
	inst := f.str("sip2-institution", "lethe", "the institution id (AO) answered when a request names none, and the library name (AM)")
	currency := f.str("sip2-currency", "USD", "the currency of SIP2 amounts (BH), three letters")
	return func(cfg *node.ServiceConfig) error {
		if (*cert == "") != (*key == "") {
			return errors.New("--sip2-tls-cert and --sip2-tls-key go together")
		}
		allow, err := strconv.ParseBool(*payments)
		if err != nil {
			return errors.New("--sip2-allow-payments must be true or false")
		}
		require, err := strconv.ParseBool(*requirePIN)
		if err != nil {
			return errors.New("--sip2-require-pin must be true or false")
		}
		if len(*delim) != 1 {
			return errors.New("--sip2-delimiter must be one character")
		}
		c := node.SIP2Config{Listen: *listen, TLSCert: *cert, TLSKey: *key}
		c.RequirePIN = require
		c.Delimiter, c.Encoding, c.Institution, c.Currency, c.AllowPayments = (*delim)[0], sip2.Encoding(*enc), *inst, *currency, allow
		if err := c.Validate(); err != nil {
			return err
		}
		cfg.SIP2 = c
		return nil
	}
}
