package node

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/sip2"
)

// SIP2Config is the SIP2 gateway of a service: off unless Listen is set.
type SIP2Config struct {
	Listen          string // host:port; "" or "off": no SIP2 listener
	TLSCert, TLSKey string // serve over TLS; required off loopback
	sip2.Config            // how it speaks, and its bounds
}

// sip2Logins checks SIP2 logins against the kiosk identities of the registry, read at
// each login so that a kiosk added or revoked counts at once.
type sip2Logins struct{ reg *identity.Registry }

func (l sip2Logins) Login(user, password string) (sip2.Terminal, bool) {
	id, err := l.reg.SIP2Login(user, password)
	if err != nil {
		return sip2.Terminal{}, false
	}
	return sip2.Terminal{Branch: id.Branch, Kiosk: id.Name}, true
}

// startSIP2 opens the SIP2 listener, like the other listeners plain only on loopback, and
// serves it over the ledger with the kiosk API's card-miss limits.
func (s *Service) startSIP2(cfg ServiceConfig) error {
	c := cfg.SIP2
	if c.Listen == "" || c.Listen == "off" {
		return nil
	}
	if c.TLSCert == "" && !Loopback(c.Listen) {
		return fmt.Errorf("--sip2-listen %s is not a loopback address: kiosk passwords and card numbers would cross the network in the clear; give --sip2-tls-cert and --sip2-tls-key", c.Listen)
	}
	sc := c.Config
	sc.Now, sc.Location, sc.Logger = cfg.Now, cfg.Location, cfg.Logger
	if err := sc.Validate(); err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("SIP2 TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("sip2 listen: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv, err := sip2.Serve(ln, s.Ledger, sip2Logins{identity.Open(cfg.Data)}, s.Kiosks, sc)
	if err != nil {
		ln.Close()
		return err
	}
	s.SIP2 = srv
	if s.auth == nil {
		// No embedded NATS server, so no registry watch to hook into: watch it here, so
		// that a revoked kiosk's sessions are cut within a second all the same.
		s.goRun("sip2 registry watch", func() error { s.watchSIP2Kiosks(); return nil })
	}
	return nil
}

// watchSIP2Kiosks tells the SIP2 gateway the active kiosks every second until the
// service stops.
func (s *Service) watchSIP2Kiosks() {
	reg := identity.Open(s.cfg.Data)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.runCtx.Done():
			return
		case <-t.C:
			active, err := reg.Active()
			if err != nil {
				s.cfg.Logger.Error("read identity registry", "err", err)
				continue
			}
			s.SIP2.Only(kioskNames(active))
		}
	}
}
