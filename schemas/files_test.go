package schemas

import (
	"encoding/json"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSchemaFiles checks that every event type, command and reply has exactly one schema
// file, with the $id its name implies, and that no file is an orphan.
func TestSchemaFiles(t *testing.T) {
	t.Parallel()
	var got []string
	err := fs.WalkDir(schemaFiles, "json", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			got = append(got, name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"json/common.json", "json/envelope.json"}
	for _, typ := range EventTypes() {
		want = append(want, "json/events/"+typ+".json")
	}
	for _, name := range Commands() {
		want = append(want, "json/commands/"+name+".json")
	}
	for _, name := range Replies() {
		want = append(want, "json/replies/"+name+".json")
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schema files (-want +got):\n%s", diff)
	}

	for _, name := range got {
		id, ok := schemaID(name)
		if !ok {
			t.Errorf("schemaID(%q) is not known", name)
			continue
		}
		doc := schemaDoc(t, name)
		if doc["$id"] != id {
			t.Errorf("%s: $id = %v, want %s", name, doc["$id"], id)
		}
		if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema = %v, want draft 2020-12", name, doc["$schema"])
		}
	}
}

func TestDataSchema(t *testing.T) {
	t.Parallel()
	for _, typ := range EventTypes() {
		if got, want := DataSchema(typ), "urn:lethe:schema:event:"+typ; got != want {
			t.Errorf("DataSchema(%q) = %q, want %q", typ, got, want)
		}
	}
	for _, typ := range []string{"", "lethe.item.checked_out.v2", "item.checked_out"} {
		if got := DataSchema(typ); got != "" {
			t.Errorf("DataSchema(%q) = %q, want \"\"", typ, got)
		}
	}
}

// TestEnvelopeLists checks that the envelope's type and dataschema enums are EventTypes.
func TestEnvelopeLists(t *testing.T) {
	t.Parallel()
	props := schemaDoc(t, "json/envelope.json")["properties"].(map[string]any)
	var types, ids []string
	for _, v := range props["type"].(map[string]any)["enum"].([]any) {
		types = append(types, v.(string))
	}
	for _, v := range props["dataschema"].(map[string]any)["enum"].([]any) {
		ids = append(ids, v.(string))
	}
	var wantIDs []string
	for _, typ := range EventTypes() {
		wantIDs = append(wantIDs, DataSchema(typ))
	}
	if diff := cmp.Diff(EventTypes(), types); diff != "" {
		t.Errorf("envelope type enum (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantIDs, ids); diff != "" {
		t.Errorf("envelope dataschema enum (-want +got):\n%s", diff)
	}
}

func TestResultOf(t *testing.T) {
	t.Parallel()
	for _, name := range Commands() {
		if r := ResultOf(name); !slices.Contains(Replies(), r) || r == ReplyEnvelope {
			t.Errorf("ResultOf(%q) = %q, want a result schema", name, r)
		}
	}
	if r := ResultOf("launch"); r != "" {
		t.Errorf(`ResultOf("launch") = %q, want ""`, r)
	}
}

// TestSchemasMatchGoTypes checks each schema object against the Go type it describes: the
// same property names, and required exactly where the field has no omitempty.
func TestSchemasMatchGoTypes(t *testing.T) {
	t.Parallel()
	type target struct {
		file, def string // schema file and $defs entry ("" for the root)
		typ       any
	}
	targets := []target{
		{"json/envelope.json", "", Event{}},
		{"json/common.json", "sealed", Sealed{}},
		{"json/common.json", "sealed_profile", Sealed{}},
		{"json/common.json", "profile", Profile{}},
		{"json/common.json", "caregiver", Caregiver{}},
		{"json/replies/reply.json", "", Reply{}},
		{"json/replies/reply.json", "error", Error{}},
		{"json/replies/checkout_result.json", "", CheckOutResult{}},
		{"json/replies/return_result.json", "", ReturnResult{}},
		{"json/replies/renew_result.json", "", RenewResult{}},
		{"json/replies/patron_record.json", "", PatronRecord{}},
		{"json/replies/patron_record.json", "loan", Loan{}},
		{"json/replies/patron_record.json", "fine", Fine{}},
		{"json/replies/registered.json", "", Registered{}},
		{"json/replies/accepted.json", "", Accepted{}},
	}
	for typ, v := range sampleEvents() {
		targets = append(targets, target{"json/events/" + typ + ".json", "", reflect.ValueOf(v).Elem().Interface()})
	}
	for name, v := range sampleCommands() {
		targets = append(targets, target{"json/commands/" + name + ".json", "", reflect.ValueOf(v).Elem().Interface()})
	}
	for _, tg := range targets {
		obj := schemaDoc(t, tg.file)
		if tg.def != "" {
			obj = obj["$defs"].(map[string]any)[tg.def].(map[string]any)
		}
		var props, required []string
		for name := range obj["properties"].(map[string]any) {
			props = append(props, name)
		}
		for _, name := range obj["required"].([]any) {
			required = append(required, name.(string))
		}
		if obj["additionalProperties"] != false {
			t.Errorf("%s#%s: additionalProperties is not false", tg.file, tg.def)
		}
		wantProps, wantRequired := jsonFields(reflect.TypeOf(tg.typ))
		slices.Sort(props)
		slices.Sort(required)
		if diff := cmp.Diff(wantProps, props); diff != "" {
			t.Errorf("%s#%s properties vs %T (-go +schema):\n%s", tg.file, tg.def, tg.typ, diff)
		}
		if diff := cmp.Diff(wantRequired, required); diff != "" {
			t.Errorf("%s#%s required vs %T (-go +schema):\n%s", tg.file, tg.def, tg.typ, diff)
		}
	}
}

// jsonFields returns the JSON names of a struct's fields (embedded structs flattened, as
// encoding/json does) and the names of those without omitempty, both sorted.
func jsonFields(t reflect.Type) (all, required []string) {
	for f := range t.Fields() {
		if f.Anonymous && f.Tag.Get("json") == "" {
			a, r := jsonFields(f.Type)
			all, required = append(all, a...), append(required, r...)
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		all = append(all, name)
		if !strings.Contains(opts, "omitempty") {
			required = append(required, name)
		}
	}
	slices.Sort(all)
	slices.Sort(required)
	return all, required
}

// TestPatternHints checks that every pattern in the schema files has a hint in words.
func TestPatternHints(t *testing.T) {
	t.Parallel()
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if p, ok := v["pattern"].(string); ok && patternHint(p) == "" {
				t.Errorf("patternHint(%q) = \"\", want a description", p)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	_ = fs.WalkDir(schemaFiles, "json", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			walk(schemaDoc(t, name))
		}
		return err
	})
}

// schemaDoc decodes an embedded schema file.
func schemaDoc(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := schemaFiles.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return doc
}
