package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// EventData decodes a message of the CIRC stream as Event does, and its data into the Go
// type of its event type (ItemCheckedOut for lethe.item.checked_out.v1, and so on), as
// encoding/json would. It is the projector's decode: on the fast path the data is taken
// from the tree the check already parsed, instead of being parsed again.
func (v *Validator) EventData(raw []byte) (Event, any, error) {
	if len(raw) <= MaxEventBytes {
		if ev, data, ok := v.fastEventData(raw); ok {
			return ev, data, nil
		}
	}
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

// structPlan says how to fill a struct from a JSON object on the fast path: for each
// property name (its json tag), the field and how to set it.
type structPlan struct {
	typ    reflect.Type
	fields []fieldPlan
}

type fieldPlan struct {
	name  string
	index int
	kind  fieldKind
	sub   *structPlan // for a struct or a pointer to one
}

type fieldKind uint8

const (
	fString fieldKind = iota
	fInt
	fTime
	fBytes
	fStruct
	fStructPtr
)

// newStructPlan plans t, or fails for a field the fast path does not fill (it then
// leaves those types to encoding/json).
func newStructPlan(t reflect.Type) (*structPlan, error) {
	p := &structPlan{typ: t}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Anonymous {
			return nil, fmt.Errorf("%s.%s: not planned", t, f.Name)
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			return nil, fmt.Errorf("%s.%s: no json name", t, f.Name)
		}
		fp := fieldPlan{name: name, index: i}
		switch ft := f.Type; {
		case ft == reflect.TypeFor[time.Time]():
			fp.kind = fTime
		case ft.Kind() == reflect.String:
			fp.kind = fString
		case ft.Kind() == reflect.Int || ft.Kind() == reflect.Int64:
			fp.kind = fInt
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Uint8:
			fp.kind = fBytes
		case ft.Kind() == reflect.Struct:
			sub, err := newStructPlan(ft)
			if err != nil {
				return nil, err
			}
			fp.kind, fp.sub = fStruct, sub
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct && ft.Elem() != reflect.TypeFor[time.Time]():
			sub, err := newStructPlan(ft.Elem())
			if err != nil {
				return nil, err
			}
			fp.kind, fp.sub = fStructPtr, sub
		default:
			return nil, fmt.Errorf("%s.%s: type %s not planned", t, f.Name, ft)
		}
		p.fields = append(p.fields, fp)
	}
	return p, nil
}

// planData plans every event data type; a type that cannot be planned is left out.
func planData() map[string]*structPlan {
	plans := map[string]*structPlan{}
	for _, typ := range EventTypes() {
		t, _ := dataType(typ)
		if p, err := newStructPlan(t); err == nil {
			plans[typ] = p
		}
	}
	return plans
}

// fill sets the struct dst from the object o as encoding/json would, for data the schema
// has accepted (property names exact, types right). It reports false for anything it
// does not handle, and then the caller uses encoding/json.
func (p *structPlan) fill(t *tree, raw []byte, o *jval, dst reflect.Value) bool {
	if o.kind != jObject {
		return false
	}
	kids := t.kids(o)
	for i := range kids {
		m := &kids[i]
		var fp *fieldPlan
		for j := range p.fields {
			if p.fields[j].name == m.key {
				fp = &p.fields[j]
				break
			}
		}
		if fp == nil {
			return false
		}
		f := dst.Field(fp.index)
		switch fp.kind {
		case fString:
			if m.kind != jString {
				return false
			}
			f.SetString(strings.Clone(m.s))
		case fInt:
			if m.kind != jNumber || f.OverflowInt(m.n) {
				return false
			}
			f.SetInt(m.n)
		case fTime:
			// encoding/json hands time.Time the string as written, escapes and all.
			if m.kind != jString || bytes.IndexByte(raw[m.start:m.end], '\\') >= 0 {
				return false
			}
			var tm time.Time
			if tm.UnmarshalText([]byte(m.s)) != nil {
				return false
			}
			f.Set(reflect.ValueOf(tm))
		case fBytes:
			if m.kind != jString {
				return false
			}
			b := make([]byte, base64.StdEncoding.DecodedLen(len(m.s)))
			n, err := base64.StdEncoding.Decode(b, []byte(m.s))
			if err != nil {
				return false
			}
			f.SetBytes(b[:n])
		case fStruct:
			if !fp.sub.fill(t, raw, m, f) {
				return false
			}
		case fStructPtr:
			if m.kind != jObject {
				return false
			}
			pv := reflect.New(fp.sub.typ)
			if !fp.sub.fill(t, raw, m, pv.Elem()) {
				return false
			}
			f.Set(pv)
		}
	}
	return true
}

// fastEventData is fastEvent that also fills the data's Go type from the tree.
func (v *Validator) fastEventData(raw []byte) (Event, any, bool) {
	p, err := v.parsers.parse(raw)
	if err != nil {
		return Event{}, nil, false
	}
	defer p.done()
	ev, data, ok := v.fastEventTree(raw, &p.t)
	if !ok {
		return Event{}, nil, false
	}
	plan := v.dataPlans[ev.Type]
	if plan == nil {
		return Event{}, nil, false
	}
	d := reflect.New(plan.typ).Elem()
	if !plan.fill(&p.t, raw, data, d) {
		return Event{}, nil, false
	}
	return ev, d.Interface(), true
}
