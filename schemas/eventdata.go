package schemas

import (
	"encoding/json"
	"reflect"
)

// EventData decodes a message of the CIRC stream as Event does, and its data into the Go
// type of its event type (ItemCheckedOut for lethe.item.checked_out.v1, and so on), as
// encoding/json would. It is the projector's decode: check, then decode once.
func (v *Validator) EventData(raw []byte) (Event, any, error) {
	ev, err := v.Event(raw)
	if err != nil {
		return Event{}, nil, err
	}
	t, ok := dataType(ev.Type)
	if !ok {
		return Event{}, nil, Errorf(CodeInvalid, "invalid event: unknown type")
	}
	p := reflect.New(t)
	if err := json.Unmarshal(ev.Data, p.Interface()); err != nil {
		return Event{}, nil, Errorf(CodeInvalid, "invalid event %s: data: %s", ev.Type, decodeProblem(err))
	}
	return ev, p.Elem().Interface(), nil
}

// dataType returns the Go type of an event type's data.
func dataType(eventType string) (reflect.Type, bool) {
	switch eventType {
	case TypeItemCataloged:
		return reflect.TypeFor[ItemCataloged](), true
	case TypePatronRegistered:
		return reflect.TypeFor[PatronRegistered](), true
	case TypeCardIssued:
		return reflect.TypeFor[CardIssued](), true
	case TypeCardReportedLost:
		return reflect.TypeFor[CardReportedLost](), true
	case TypePatronClosed:
		return reflect.TypeFor[PatronClosed](), true
	case TypeItemCheckedOut:
		return reflect.TypeFor[ItemCheckedOut](), true
	case TypeItemRenewed:
		return reflect.TypeFor[ItemRenewed](), true
	case TypeItemReturned:
		return reflect.TypeFor[ItemReturned](), true
	case TypeItemDeclaredLost:
		return reflect.TypeFor[ItemDeclaredLost](), true
	case TypeItemDamaged:
		return reflect.TypeFor[ItemDamaged](), true
	case TypeFineAssessed:
		return reflect.TypeFor[FineAssessed](), true
	case TypeFinePaid:
		return reflect.TypeFor[FinePaid](), true
	case TypeFineWaived:
		return reflect.TypeFor[FineWaived](), true
	case TypeTransactionClosed:
		return reflect.TypeFor[TransactionClosed](), true
	case TypeTransactionExpunged:
		return reflect.TypeFor[TransactionExpunged](), true
	}
	return nil, false
}
