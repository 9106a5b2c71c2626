package schemas

import (
	"encoding/json"
	"testing"
)

// BenchmarkEvent measures the auditor's per-event decode: Validator.Event, then the data
// into its Go type. BenchmarkEventUnchecked is the same decode without any check.
func BenchmarkEvent(b *testing.B) {
	v := testValidator(b)
	raw := mustMarshal(b, envelope(b, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut]))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := v.Event(raw)
		if err != nil {
			b.Fatal(err)
		}
		var data ItemCheckedOut
		if err := DecodeStrict(ev.Data, &data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventUnchecked(b *testing.B) {
	raw := mustMarshal(b, envelope(b, TypeItemCheckedOut, sampleEvents()[TypeItemCheckedOut]))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		var ev Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			b.Fatal(err)
		}
		var data ItemCheckedOut
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommand measures the ledger's intake of a checkout: Command, then DecodeStrict.
func BenchmarkCommand(b *testing.B) {
	v := testValidator(b)
	raw := mustMarshal(b, sampleCommands()[CmdCheckOut])
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Command(CmdCheckOut, raw); err != nil {
			b.Fatal(err)
		}
		var c CheckOut
		if err := DecodeStrict(raw, &c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewValidator(b *testing.B) {
	for b.Loop() {
		if _, err := NewValidator(); err != nil {
			b.Fatal(err)
		}
	}
}
