package schemas

// EventData decodes a message of the CIRC stream that holds one event as Event does, and
// its data into the Go type of its event type (ItemCheckedOut for
// lethe.item.checked_out.v1, and so on), as encoding/json would. A batch is refused: read
// messages that may hold one with EventsData.
func (v *Validator) EventData(raw []byte) (Event, any, error) {
	ev, err := v.Event(raw)
	if err != nil {
		return Event{}, nil, err
	}
	data, err := decodeData(ev)
	if err != nil {
		return Event{}, nil, err
	}
	return ev, data, nil
}
