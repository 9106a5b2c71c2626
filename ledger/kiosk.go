package ledger

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

// ServeKiosks answers kiosk requests on lethe.kiosk.<branch>.<kiosk>.<command> from the
// moment it returns until ctx ends or the subscription is drained. Every request gets
// exactly one reply: a result, or a coded error that never holds personal data and never
// internal detail. Requests are handled concurrently; the queue group lets several Lethe
// processes share the kiosks.
func (l *Ledger) ServeKiosks(ctx context.Context, nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.QueueSubscribe(KioskWildcard, "lethe-ledger", func(m *nats.Msg) {
		go l.answerKiosk(ctx, m)
	})
	if err != nil {
		return nil, err
	}
	// After the flush the server has the subscription: no request can miss it.
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	return sub, nil
}

func (l *Ledger) answerKiosk(ctx context.Context, m *nats.Msg) {
	start := time.Now()
	tok := strings.Split(m.Subject, ".")
	var result any
	var err error
	var command string
	switch {
	case len(tok) != 5 || !ValidToken(tok[2]) || !ValidToken(tok[3]):
		err = schemas.Errorf(schemas.CodeInvalid, "kiosk subject must be lethe.kiosk.<branch>.<kiosk>.<command>")
	case !slices.Contains(schemas.KioskCommands(), tok[4]):
		err = schemas.Errorf(schemas.CodeInvalid, "unknown kiosk command")
	case len(m.Data) > schemas.MaxCommandBytes:
		err = schemas.Errorf(schemas.CodeInvalid, "command is larger than %d bytes", schemas.MaxCommandBytes)
	default:
		command = tok[4]
		result, err = l.Execute(ctx, Station{Kind: "kiosk", Branch: tok[2], ID: tok[3]}, command, m.Data)
	}
	reply := schemas.Reply{OK: err == nil}
	if err != nil {
		pub := schemas.Public(err)
		reply.Error = pub
		level := slog.LevelInfo
		if pub.Code == schemas.CodeInternal || pub.Code == schemas.CodeUnavailable {
			level = slog.LevelError
		}
		// err may wrap internal detail; it never wraps personal data (the ledger builds
		// errors from codes and opaque ids only).
		l.cfg.Logger.Log(ctx, level, "kiosk command refused", "command", command, "code", pub.Code, "err", err)
	} else if reply.Result, err = json.Marshal(result); err != nil {
		reply = schemas.Reply{Error: schemas.Public(err)}
	}
	data, _ := json.Marshal(reply)
	if m.Reply != "" {
		if err := m.Respond(data); err != nil {
			l.cfg.Logger.Error("kiosk reply", "err", err)
		}
	}
	l.cfg.Logger.Debug("kiosk command", "command", command, "ok", reply.OK, "elapsed", time.Since(start))
}
