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
