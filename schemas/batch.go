package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"

	jsonv2 "github.com/go-json-experiment/json"
)

// A command's events are one message of the CIRC stream. A command of one event is that
// event, in structured JSON mode (a JSON object, application/cloudevents+json); a command
// of several is a CloudEvents JSON batch (application/cloudevents-batch+json): a JSON
// array of MinBatchEvents to MaxBatchEvents events, in order, sharing one command id and
// one subject. One message commits in one write, so a command needs no JetStream atomic
// batch, and its events carry the message's stream sequence.
const (
	BatchContentType = "application/cloudevents-batch+json"
	MinBatchEvents   = 2
	MaxBatchEvents   = 32
)

// IsBatch reports whether raw holds a batch (a JSON array) rather than one event: its
// first byte after white space is '['.
func IsBatch(raw []byte) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '['
}

// SplitEvents splits a message into the raw events it holds, without checking them: the
// message itself when it is one event, the elements of a batch otherwise. The batch must
// be valid JSON within MaxEventBytes (the stream's largest message) and hold
// MinBatchEvents to MaxBatchEvents values. It is the decode of readers that trust what the
// ledger checked at intake (lethe audit replay); Validator.Events checks as well.
func SplitEvents(raw []byte) ([]json.RawMessage, error) {
	if !IsBatch(raw) {
		return []json.RawMessage{raw}, nil
	}
	if len(raw) > MaxEventBytes {
		return nil, Errorf(CodeInvalid, "invalid event batch: too large (limit %d bytes)", MaxEventBytes)
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, Errorf(CodeInvalid, "invalid event batch: %s", decodeProblem(err))
	}
	if len(parts) < MinBatchEvents || len(parts) > MaxBatchEvents {
		return nil, Errorf(CodeInvalid, "invalid event batch: %d events (a batch holds %d to %d)", len(parts), MinBatchEvents, MaxBatchEvents)
	}
	return parts, nil
}

// Events decodes a message of the CIRC stream strictly: one event as Event does, or a
// batch each of whose events Event accepts, all with the same command id (not empty) and
// the same subject.
func (v *Validator) Events(raw []byte) ([]Event, error) { return events(raw, v.Event) }

// events splits a message into its events, decoding each with one, and checks that a
// batch is one command's events on one subject.
func events(raw []byte, one func([]byte) (Event, error)) ([]Event, error) {
	if !IsBatch(raw) {
		ev, err := one(raw)
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	}
	parts, err := SplitEvents(raw)
	if err != nil {
		return nil, err
	}
	evs := make([]Event, len(parts))
	for i, p := range parts {
		ev, err := one(p)
		if err != nil {
			return nil, Errorf(CodeInvalid, "invalid event batch, event %d: %s", i+1, message(err))
		}
		if ev.CommandID == "" {
			return nil, Errorf(CodeInvalid, "invalid event batch, event %d: a batch is one command's events, and this one has no commandid", i+1)
		}
		if i > 0 && (ev.CommandID != evs[0].CommandID || ev.Subject != evs[0].Subject) {
			return nil, Errorf(CodeInvalid, "invalid event batch, event %d: a batch is one command's events on one subject, and this one's commandid or subject differs from the first's", i+1)
		}
		evs[i] = ev
	}
	return evs, nil
}

// EventsData decodes a message as Events does, and each event's data into the Go type of
// its event type, as EventData does.
func (v *Validator) EventsData(raw []byte) ([]Event, []any, error) {
	evs, err := v.Events(raw)
	return eventsData(evs, err, decodeData)
}

// DecodeEventsData decodes a message as EventsData does, but without checking any event
// against its schema: each event's envelope and data are only decoded, strictly, into
// their Go types. It is for the messages that a checkpoint signed by the library's key
// covers (their bytes are those the projector checked before it applied them), read
// again by a rebuild of the projections, which it makes two to three times faster.
func DecodeEventsData(raw []byte) ([]Event, []any, error) {
	evs, err := events(raw, decodeEvent)
	return eventsData(evs, err, decodeDataStrict)
}

// decodeEvent decodes one event's envelope without its schema: strictly (no unknown or
// repeated property), within MaxEventBytes, with a known type whose schema its
// dataschema names.
func decodeEvent(raw []byte) (Event, error) {
	if len(raw) > MaxEventBytes {
		return Event{}, Errorf(CodeInvalid, "invalid event: too large (limit %d bytes)", MaxEventBytes)
	}
	var ev Event
	if err := decodeExact(raw, &ev); err != nil {
		return Event{}, Errorf(CodeInvalid, "invalid event: %s", err.Error())
	}
	if _, ok := dataType(ev.Type); !ok || ev.DataSchema != DataSchema(ev.Type) || len(ev.Data) == 0 {
		return Event{}, Errorf(CodeInvalid, "invalid event: not an event of a known type with its data")
	}
	return ev, nil
}

// message is a coded error's message, without its code.
func message(err error) string {
	if e := (*Error)(nil); errors.As(err, &e) {
		return e.Message
	}
	return "invalid event"
}

// eventsData decodes each event's data with decode.
func eventsData(evs []Event, err error, decode func(Event) (any, error)) ([]Event, []any, error) {
	if err != nil {
		return nil, nil, err
	}
	data := make([]any, len(evs))
	for i, ev := range evs {
		if data[i], err = decode(ev); err != nil {
			return nil, nil, err
		}
	}
	return evs, data, nil
}

// decodeDataStrict decodes an unchecked event's data into the Go type of its event type,
// refusing unknown and repeated properties.
func decodeDataStrict(ev Event) (any, error) {
	t, ok := dataType(ev.Type)
	if !ok {
		return nil, Errorf(CodeInvalid, "invalid event: unknown type")
	}
	p := reflect.New(t)
	if err := decodeExact(ev.Data, p.Interface()); err != nil {
		return nil, Errorf(CodeInvalid, "invalid event %s: data: %s", ev.Type, err.Error())
	}
	return p.Elem().Interface(), nil
}

// errInexact is decodeExact's one refusal: its decoder's own errors can quote the input.
var errInexact = errors.New("not one JSON value of its type's members, each once, in their case")

// decodeExact decodes raw into v in one pass, with encoding/json/v2's module: exactly one
// value, valid UTF-8, member names matched exactly (encoding/json matches them in any
// case), no unknown or repeated member. It is DecodeStrict's rule, a little stricter,
// at half its cost; DecodeEventsData uses it, where no schema checked raw first.
func decodeExact(raw []byte, v any) error {
	if err := jsonv2.Unmarshal(raw, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		return errInexact
	}
	return nil
}

// decodeData decodes a checked event's data into the Go type of its event type.
func decodeData(ev Event) (any, error) {
	t, ok := dataType(ev.Type)
	if !ok {
		return nil, Errorf(CodeInvalid, "invalid event: unknown type")
	}
	p := reflect.New(t)
	if err := json.Unmarshal(ev.Data, p.Interface()); err != nil {
		return nil, Errorf(CodeInvalid, "invalid event %s: data: %s", ev.Type, decodeProblem(err))
	}
	return p.Elem().Interface(), nil
}
