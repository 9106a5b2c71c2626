package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzCommand feeds arbitrary bytes to Validator.Command. It must never panic; a refusal is
// a CodeInvalid *Error that echoes nothing; an accepted command must decode into its Go
// type with DecodeStrict, and that value, marshalled again, must be accepted too.
func FuzzCommand(f *testing.F) {
	v := testValidator(f)
	names := Commands()
	index := map[string]uint8{}
	for i, name := range names {
		index[name] = uint8(i)
	}
	for name, cmd := range sampleCommands() {
		f.Add(index[name], mustMarshal(f, cmd))
	}
	for name, cmd := range minimalCommands() {
		f.Add(index[name], mustMarshal(f, cmd))
	}
	for _, tc := range invalidCommands(f) {
		f.Add(index[tc.name], tc.raw)
	}
	f.Fuzz(func(t *testing.T, i uint8, raw []byte) {
		name := names[int(i)%len(names)]
		err := v.Command(name, raw)
		if err != nil {
			checkRefusal(t, "Command("+name+")", err, raw)
			return
		}
		dst := newCommand(name)
		if err := DecodeStrict(raw, dst); err != nil {
			t.Fatalf("Command(%s, %q) = nil, but DecodeStrict = %v", name, raw, err)
		}
		again, err := json.Marshal(dst)
		if err != nil {
			t.Fatalf("json.Marshal(%#v) = %v", dst, err)
		}
		if err := v.Command(name, again); err != nil {
			t.Fatalf("Command(%s, %q) = nil, but re-marshalled %q = %v", name, raw, again, err)
		}
	})
}

// FuzzEvent feeds arbitrary bytes to Validator.Event. It must never panic; a refusal is a
// CodeInvalid *Error that echoes nothing; an accepted event's data must decode into its
// Go type, and the Event, marshalled again, must be accepted as the same event.
func FuzzEvent(f *testing.F) {
	v := testValidator(f)
	for typ, data := range sampleEvents() {
		f.Add(mustMarshal(f, envelope(f, typ, data)))
	}
	f.Add(mustMarshal(f, envelope(f, TypeFineAssessed, sampleFee())))
	noOptional := envelope(f, TypeItemReturned, sampleEvents()[TypeItemReturned])
	noOptional.Subject, noOptional.CommandID = "", ""
	f.Add(mustMarshal(f, noOptional))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := v.Event(raw)
		if err != nil {
			checkRefusal(t, "Event", err, raw)
			return
		}
		if err := DecodeStrict(ev.Data, newEventData(ev.Type)); err != nil {
			t.Fatalf("Event(%q) = nil, but DecodeStrict(data) = %v", raw, err)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("json.Marshal(Event(%q)) = %v", raw, err)
		}
		ev2, err := v.Event(again)
		if err != nil {
			t.Fatalf("Event(%q) = nil, but re-marshalled %q = %v", raw, again, err)
		}
		if diff := cmp.Diff(generic(t, ev.Data), generic(t, ev2.Data)); diff != "" {
			t.Errorf("data changed on re-marshal (-first +second):\n%s", diff)
		}
		ev.Data, ev2.Data = nil, nil
		if diff := cmp.Diff(ev, ev2); diff != "" {
			t.Errorf("envelope changed on re-marshal (-first +second):\n%s", diff)
		}
	})
}

// checkRefusal checks that a refusal is a CodeInvalid *Error whose message is plain ASCII
// and quotes no string of the input except the schemas' own words.
func checkRefusal(t *testing.T, call string, err error, raw []byte) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalid {
		t.Fatalf("%s(%q) = %v, want a *Error with code invalid", call, raw, err)
	}
	for _, c := range []byte(e.Message) {
		if c < ' ' || c > '~' {
			t.Fatalf("%s(%q) = %q: the message is not printable ASCII", call, raw, e.Message)
		}
	}
	if leak := leaked(e.Message, raw); len(leak) >= 8 {
		t.Fatalf("%s(%q) = %q: the message echoes the input %q", call, raw, e.Message, leak)
	}
}

// generic decodes raw into its generic JSON form, numbers as json.Number.
func generic(t *testing.T, raw []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	return v
}

// FuzzEvents feeds arbitrary bytes to Validator.Events, the decode of every reader of the
// stream. It must never panic; a refusal is a CodeInvalid *Error that echoes nothing; an
// accepted message holds one event, or a batch of MinBatchEvents to MaxBatchEvents events
// of one command on one subject, and SplitEvents splits it into as many.
func FuzzEvents(f *testing.F) {
	v := testValidator(f)
	f.Add(mustMarshal(f, returnBatch(f)))
	f.Add(mustMarshal(f, returnBatch(f)[0]))
	f.Add([]byte(`[]`))
	f.Add([]byte(` [{"specversion":"1.0"}, 7]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		// The decode without schemas (a rebuild, under a signed checkpoint) never panics,
		// refuses with a coded error that echoes nothing, and decodes whatever the
		// schemas accept exactly as EventsData does.
		uevs, udata, uerr := DecodeEventsData(raw)
		if uerr != nil {
			checkRefusal(t, "DecodeEventsData", uerr, raw)
		}
		evs, data, err := v.EventsData(raw)
		if err != nil {
			checkRefusal(t, "Events", err, raw)
			return
		}
		if uerr != nil || !reflect.DeepEqual(uevs, evs) || !reflect.DeepEqual(udata, data) {
			t.Fatalf("EventsData(%q) accepted, but DecodeEventsData = %v (or decoded it otherwise)", raw, uerr)
		}
		parts, err := SplitEvents(raw)
		if err != nil || len(parts) != len(evs) {
			t.Fatalf("Events(%q) = %d events, but SplitEvents = %d parts, %v", raw, len(evs), len(parts), err)
		}
		if IsBatch(raw) {
			if len(evs) < MinBatchEvents || len(evs) > MaxBatchEvents {
				t.Fatalf("Events(%q) accepted a batch of %d", raw, len(evs))
			}
			for _, ev := range evs {
				if ev.CommandID == "" || ev.CommandID != evs[0].CommandID || ev.Subject != evs[0].Subject {
					t.Fatalf("Events(%q) accepted a batch of several commands or subjects", raw)
				}
			}
		} else if len(evs) != 1 {
			t.Fatalf("Events(%q) = %d events from one", raw, len(evs))
		}
	})
}
