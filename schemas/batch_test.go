package schemas

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// returnBatch is a return's events as the ledger appends them: the return and the close,
// one command on one subject.
func returnBatch(t testing.TB) []Event {
	t.Helper()
	returned := envelope(t, TypeItemReturned, sampleEvents()[TypeItemReturned])
	closed := envelope(t, TypeTransactionClosed, sampleEvents()[TypeTransactionClosed])
	closed.ID = "01890a5d-ac96-774b-bcce-b302099a8058"
	closed.Subject = returned.Subject
	return []Event{returned, closed}
}

// TestEventsBatch: a message holding one event decodes as that event, and a CloudEvents
// batch as its events in order, each with its data; Event and EventData refuse a batch.
func TestEventsBatch(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	batch := returnBatch(t)
	raw := mustMarshal(t, batch)
	if !IsBatch(raw) || !IsBatch(append([]byte(" \n"), raw...)) {
		t.Fatal("IsBatch refused a batch")
	}
	evs, data, err := v.EventsData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].ID != batch[0].ID || evs[1].ID != batch[1].ID {
		t.Fatalf("EventsData = %d events, want the batch's two in order", len(evs))
	}
	if _, ok := data[0].(ItemReturned); !ok {
		t.Errorf("data[0] is %T, want ItemReturned", data[0])
	}
	if _, ok := data[1].(TransactionClosed); !ok {
		t.Errorf("data[1] is %T, want TransactionClosed", data[1])
	}
	one := mustMarshal(t, batch[0])
	if IsBatch(one) {
		t.Fatal("IsBatch took one event for a batch")
	}
	if evs, err := v.Events(one); err != nil || len(evs) != 1 || evs[0].ID != batch[0].ID {
		t.Errorf("Events(one event) = %d events, %v", len(evs), err)
	}
	if parts, err := SplitEvents(one); err != nil || len(parts) != 1 || string(parts[0]) != string(one) {
		t.Errorf("SplitEvents(one event) = %d parts, %v", len(parts), err)
	}
	if _, err := v.Event(raw); err == nil {
		t.Error("Event accepted a batch")
	}
	if _, _, err := v.EventData(raw); err == nil {
		t.Error("EventData accepted a batch")
	}
}

// TestInvalidBatches: a batch that is not one command's events on one subject, holds too
// few or too many, is too large, or holds an invalid event, is refused with a coded error
// that echoes nothing.
func TestInvalidBatches(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	batch := returnBatch(t)
	with := func(change func(evs []Event) []Event) []byte {
		evs := change(append([]Event(nil), batch...))
		return mustMarshal(t, evs)
	}
	many := make([]Event, MaxBatchEvents+1)
	for i := range many {
		many[i] = batch[i%2]
	}
	badEvent, err := json.Marshal([]json.RawMessage{mustMarshal(t, batch[0]), json.RawMessage(`{"specversion":"1.0","secret":"0123456789"}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		raw        []byte
	}{
		{"empty", "0 events", []byte(`[]`)},
		{"one", "1 events", with(func(evs []Event) []Event { return evs[:1] })},
		{"too many", "33 events", mustMarshal(t, many)},
		{"not JSON", "invalid event batch", []byte(`[{"specversion":`)},
		{"not events", "event batch, event 1", []byte(`[1, 2]`)},
		{"invalid event", "event batch, event 2", badEvent},
		{"two commands", "commandid or subject differs", with(func(evs []Event) []Event { evs[1].CommandID = "01890a5d-ac96-774b-bcce-b302099a8059"; return evs })},
		{"two subjects", "commandid or subject differs", with(func(evs []Event) []Event { evs[1].Subject = "circ.item.other"; return evs })},
		{"no command", "has no commandid", with(func(evs []Event) []Event { evs[0].CommandID, evs[1].CommandID = "", ""; return evs })},
		{"too large", "too large", []byte("[" + strings.Repeat(" ", MaxEventBytes) + "]")},
	} {
		_, err := v.Events(tc.raw)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		checkInvalid(t, tc.name, err, tc.raw, "invalid event", "")
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

// TestDecodeEventsData: the decode without schemas, which a rebuild uses under a signed
// checkpoint, gives every sample event exactly as the checked decode does, and still
// refuses, with a coded error that echoes nothing, what no reader could apply: an unknown
// type, a dataschema not its type's, a property the Go types do not have, a batch of two
// commands.
func TestDecodeEventsData(t *testing.T) {
	t.Parallel()
	v := testValidator(t)
	for typ, data := range sampleEvents() {
		raw := mustMarshal(t, envelope(t, typ, data))
		want, wantData, err := v.EventsData(raw)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		got, gotData, err := DecodeEventsData(raw)
		if err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotData, wantData) {
			t.Errorf("%s: DecodeEventsData = %+v, %v; want %+v", typ, gotData, err, wantData)
		}
	}
	batch := returnBatch(t)
	if _, _, err := DecodeEventsData(mustMarshal(t, batch)); err != nil {
		t.Errorf("a return's batch: %v", err)
	}

	secret := "Reader Secret"
	unknown := envelope(t, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut])
	unknown.Type = "lethe.nothing.v1"
	wrongSchema := envelope(t, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut])
	wrongSchema.DataSchema = DataSchema(TypeItemReturned)
	extra := envelope(t, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut])
	extra.Data = append(extra.Data[:len(extra.Data)-1:len(extra.Data)-1], []byte(`,"note":"`+secret+`"}`)...)
	twoCommands := returnBatch(t)
	twoCommands[1].CommandID = "another-command"
	for name, raw := range map[string][]byte{
		"unknown type":          mustMarshal(t, unknown),
		"another type's schema": mustMarshal(t, wrongSchema),
		"an unknown property":   mustMarshal(t, extra),
		"two commands":          mustMarshal(t, twoCommands),
		"not JSON":              []byte(`{"specversion":"` + secret),
	} {
		_, _, err := DecodeEventsData(raw)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		checkRefusal(t, "DecodeEventsData", err, raw)
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the refusal echoes the message: %v", name, err)
		}
	}
}
