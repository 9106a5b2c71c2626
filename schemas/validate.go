package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Size limits, checked before any parsing.
const (
	MaxCommandBytes = 16 << 10 // the largest command accepted
	MaxEventBytes   = 64 << 10 // the largest event accepted
	maxReplyBytes   = 1 << 20  // replies are Lethe's own output; the bound only guards tests
)

// Schema ids. Each schema file's $id is one of these; envelopes name the schema of their
// data in dataschema.
const (
	commonSchemaID   = "urn:lethe:schema:common"
	envelopeSchemaID = "urn:lethe:schema:envelope"
	eventSchemaNS    = "urn:lethe:schema:event:"
	commandSchemaNS  = "urn:lethe:schema:command:"
	replySchemaNS    = "urn:lethe:schema:reply:"
)

// maxProblems bounds how many schema violations one error message lists.
const maxProblems = 5

//go:embed json
var schemaFiles embed.FS

// DataSchema returns the id of the JSON Schema of an event type's data, the value of the
// envelope's dataschema: urn:lethe:schema:event:<type>. It returns "" for an unknown type.
func DataSchema(eventType string) string {
	if _, ok := dataType(eventType); ok {
		return eventSchemaNS + eventType
	}
	return ""
}

// Validator checks commands, events and replies against the embedded JSON Schemas. Build
// one with NewValidator and share it: it is safe for concurrent use.
//
// Every failure is a *Error with CodeInvalid. Its message names the JSON location and the
// rule broken, and never the offending value or an unexpected property name: those can be
// card numbers, names or PINs.
type Validator struct {
	envelope *jsonschema.Schema
	events   map[string]*jsonschema.Schema // by event type
	commands map[string]*jsonschema.Schema // by command name
	replies  map[string]*jsonschema.Schema // by reply name
}

// NewValidator compiles every embedded schema.
func NewValidator() (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(embeddedOnly{})
	// The schemas' own formats, so that what they accept encoding/json can decode.
	c.RegisterFormat(&jsonschema.Format{Name: "date-time", Validate: validateDateTime})
	c.RegisterFormat(&jsonschema.Format{Name: "int64", Validate: validateInteger})
	c.RegisterFormat(&jsonschema.Format{Name: "uint64", Validate: validateInteger})

	err := fs.WalkDir(schemaFiles, "json", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		id, ok := schemaID(name)
		if !ok {
			return fmt.Errorf("unexpected schema file %s", name)
		}
		f, err := schemaFiles.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			return fmt.Errorf("schema file %s: %w", name, err)
		}
		if obj, _ := doc.(map[string]any); obj["$id"] != id {
			return fmt.Errorf("schema file %s: $id is not %s", name, id)
		}
		return c.AddResource(id, doc)
	})
	if err != nil {
		return nil, fmt.Errorf("load schemas: %w", err)
	}

	compile := func(id string) (*jsonschema.Schema, error) {
		s, err := c.Compile(id)
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", id, err)
		}
		return s, nil
	}
	compileAll := func(ns string, names []string) (map[string]*jsonschema.Schema, error) {
		m := make(map[string]*jsonschema.Schema, len(names))
		for _, name := range names {
			s, err := compile(ns + name)
			if err != nil {
				return nil, err
			}
			m[name] = s
		}
		return m, nil
	}
	v := &Validator{}
	if v.envelope, err = compile(envelopeSchemaID); err != nil {
		return nil, err
	}
	if v.events, err = compileAll(eventSchemaNS, EventTypes()); err != nil {
		return nil, err
	}
	if v.commands, err = compileAll(commandSchemaNS, Commands()); err != nil {
		return nil, err
	}
	if v.replies, err = compileAll(replySchemaNS, Replies()); err != nil {
		return nil, err
	}
	return v, nil
}

// schemaID returns the $id the embedded file name must declare.
func schemaID(name string) (string, bool) {
	dir, file := path.Split(name)
	base, ok := strings.CutSuffix(file, ".json")
	if !ok {
		return "", false
	}
	switch {
	case name == "json/common.json":
		return commonSchemaID, true
	case name == "json/envelope.json":
		return envelopeSchemaID, true
	case dir == "json/events/" && DataSchema(base) != "":
		return eventSchemaNS + base, true
	case dir == "json/commands/" && slices.Contains(Commands(), base):
		return commandSchemaNS + base, true
	case dir == "json/replies/" && slices.Contains(Replies(), base):
		return replySchemaNS + base, true
	}
	return "", false
}

// embeddedOnly refuses to load any schema that is not embedded: the compiler must never
// read a file or the network.
type embeddedOnly struct{}

func (embeddedOnly) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not embedded", url)
}

// Command checks the raw JSON of a command against the schema of the named command (one
// of Commands). Decode an accepted command with DecodeStrict.
func (v *Validator) Command(name string, raw []byte) error {
	s, ok := v.commands[name]
	if !ok {
		if safeName(name) == name {
			return Errorf(CodeInvalid, "unknown command %q", name)
		}
		return Errorf(CodeInvalid, "unknown command")
	}
	return check(s, "invalid "+name, raw, MaxCommandBytes)
}

// Reply checks raw JSON against the named reply schema (one of Replies).
func (v *Validator) Reply(name string, raw []byte) error {
	s, ok := v.replies[name]
	if !ok {
		return Errorf(CodeInvalid, "unknown reply schema")
	}
	return check(s, "invalid "+name, raw, maxReplyBytes)
}

// Event decodes a message of the CIRC stream strictly: within MaxEventBytes, one JSON
// value without repeated properties, a valid envelope whose dataschema is the schema of
// its type, and data valid against that schema.
func (v *Validator) Event(raw []byte) (Event, error) {
	if len(raw) > MaxEventBytes {
		return Event{}, Errorf(CodeInvalid, "invalid event: too large (limit %d bytes)", MaxEventBytes)
	}

	tree, start, end, err := decodeTree(raw, "data")
	if err != nil {
		return Event{}, Errorf(CodeInvalid, "invalid event: %s", err.Error())
	}
	if err := v.envelope.Validate(tree); err != nil {
		return Event{}, schemaError("invalid event", "", err)
	}
	env := tree.(map[string]any) // the envelope schema requires an object
	typ := env["type"].(string)  // and a type from the known list
	what := "invalid event " + typ
	if start < 0 || end < start { // cannot happen: data is a required object
		return Event{}, Errorf(CodeInvalid, "%s: /data not found", what)
	}
	if env["dataschema"] != DataSchema(typ) {
		return Event{}, Errorf(CodeInvalid, "%s: /dataschema is not the schema of the type", what)
	}
	if err := v.events[typ].Validate(env["data"]); err != nil {
		return Event{}, schemaError(what, "/data", err)
	}
	// The schema has checked every attribute, so the Event is filled from the tree rather
	// than by decoding raw again; data keeps its bytes as they came.
	ev := Event{
		SpecVersion:     env["specversion"].(string),
		ID:              env["id"].(string),
		Type:            typ,
		Source:          env["source"].(string),
		DataContentType: env["datacontenttype"].(string),
		DataSchema:      env["dataschema"].(string),
		Data:            bytes.Clone(raw[start:end]),
	}
	ev.Subject, _ = env["subject"].(string)
	ev.CommandID, _ = env["commandid"].(string)
	// UnmarshalText parses as encoding/json does; the timestamp pattern and format admit
	// only strings it parses.
	if err := ev.Time.UnmarshalText([]byte(env["time"].(string))); err != nil {
		return Event{}, Errorf(CodeInvalid, "%s: /time is not a valid RFC 3339 date-time", what)
	}
	return ev, nil
}

// check validates raw against s, refusing input larger than limit before parsing it.
func check(s *jsonschema.Schema, what string, raw []byte, limit int) error {
	if len(raw) > limit {
		return Errorf(CodeInvalid, "%s: too large (limit %d bytes)", what, limit)
	}
	tree, _, _, err := decodeTree(raw, "")
	if err != nil {
		return Errorf(CodeInvalid, "%s: %s", what, err.Error())
	}
	if err := s.Validate(tree); err != nil {
		return schemaError(what, "", err)
	}
	return nil
}

// schemaError turns a validation failure into a *Error that lists the violated rules
// by location. prefix is the pointer of the validated value inside the whole document.
func schemaError(what, prefix string, err error) *Error {
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return Errorf(CodeInvalid, "%s: does not satisfy the schema", what)
	}
	var msgs []string
	for _, leaf := range leaves(verr, nil) {
		loc := make([]string, len(leaf.InstanceLocation))
		for i, tok := range leaf.InstanceLocation {
			loc[i] = safeToken(tok)
		}
		msgs = append(msgs, violation(prefix+pointer(loc), leaf.ErrorKind)...)
	}
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	if len(msgs) == 0 {
		msgs = []string{"does not satisfy the schema"}
	}
	if n := len(msgs); n > maxProblems {
		msgs = append(msgs[:maxProblems], fmt.Sprintf("and %d more problems", n-maxProblems))
	}
	return Errorf(CodeInvalid, "%s: %s", what, strings.Join(msgs, "; "))
}

// leaves appends the innermost errors of e: the rules actually broken, without the
// "$ref failed" and "then failed" wrappers around them.
func leaves(e *jsonschema.ValidationError, out []*jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return append(out, e)
	}
	for _, c := range e.Causes {
		out = leaves(c, out)
	}
	return out
}

// violation describes a broken rule at loc. It prints only what the schema defines
// (property names it requires, limits, formats, patterns), never what the input holds.
func violation(loc string, k jsonschema.ErrorKind) []string {
	at := where(loc)
	switch k := k.(type) {
	case *kind.Required:
		var out []string
		for _, name := range k.Missing {
			if loc == "" {
				out = append(out, fmt.Sprintf("missing property %q", safeName(name)))
			} else {
				out = append(out, fmt.Sprintf("%s is missing property %q", loc, safeName(name)))
			}
		}
		return out
	case *kind.AdditionalProperties:
		// The names are the client's, so they print only if they look like ours.
		var out []string
		for _, name := range k.Properties {
			msg := "unknown property"
			if n := safeName(name); n != "?" {
				msg += fmt.Sprintf(" %q", n)
			}
			if loc != "" {
				msg = loc + " has an " + msg
			}
			out = append(out, msg)
		}
		return out
	case *kind.Type:
		want := make([]string, len(k.Want))
		for i, t := range k.Want {
			want[i] = article(t)
		}
		return []string{fmt.Sprintf("%s must be %s, not %s", at, strings.Join(want, " or "), article(k.Got))}
	case *kind.Enum:
		return []string{at + " is not one of the allowed values"}
	case *kind.Const:
		if s, ok := k.Want.(string); ok {
			return []string{fmt.Sprintf("%s must be %q", at, s)}
		}
		return []string{at + " does not have the required value"}
	case *kind.Format:
		return []string{fmt.Sprintf("%s is not a valid %s", at, formatHint(k.Want))}
	case *kind.Pattern:
		msg := at + " does not match the required pattern"
		if hint := patternHint(k.Want); hint != "" {
			msg += " (" + hint + ")"
		}
		return []string{msg}
	case *kind.MinLength:
		return []string{fmt.Sprintf("%s is too short (minimum %s)", at, characters(k.Want))}
	case *kind.MaxLength:
		return []string{fmt.Sprintf("%s is too long (maximum %s)", at, characters(k.Want))}
	case *kind.Minimum:
		return []string{fmt.Sprintf("%s is less than the minimum %s", at, k.Want.RatString())}
	case *kind.Maximum:
		return []string{fmt.Sprintf("%s is more than the maximum %s", at, k.Want.RatString())}
	case *kind.MinItems:
		return []string{fmt.Sprintf("%s has too few items (minimum %d)", at, k.Want)}
	case *kind.MaxItems:
		return []string{fmt.Sprintf("%s has too many items (maximum %d)", at, k.Want)}
	case *kind.MinProperties:
		return []string{fmt.Sprintf("%s has too few properties (minimum %d)", at, k.Want)}
	case *kind.UniqueItems:
		return []string{fmt.Sprintf("%s has repeated items", at)}
	case *kind.FalseSchema:
		return []string{at + " is not allowed here"}
	}
	return []string{at + " does not satisfy the schema"}
}

// characters counts characters in words.
func characters(n int) string {
	if n == 1 {
		return "1 character"
	}
	return strconv.Itoa(n) + " characters"
}

// article names a JSON type with its indefinite article.
func article(jsonType string) string {
	switch jsonType {
	case "object", "array", "integer":
		return "an " + jsonType
	case "null":
		return "null"
	case "string", "number", "boolean":
		return "a " + jsonType
	}
	return "another type"
}

// formatHint describes a format the schemas use.
func formatHint(format string) string {
	switch format {
	case "date":
		return "date (YYYY-MM-DD)"
	case "date-time":
		return "RFC 3339 date-time (such as 2006-01-02T15:04:05Z)"
	case "int64", "uint64":
		return "whole number (digits only, no fraction or exponent)"
	}
	return "value"
}

// patternHint says in words what a pattern of the schemas accepts. A test checks that
// every pattern in the schema files has a hint.
func patternHint(pattern string) string {
	switch pattern {
	case "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$":
		return "a lowercase UUID"
	case "^[A-Za-z0-9_-]{1,64}$":
		return "1 to 64 letters, digits, '_' or '-'"
	case "^[A-Za-z0-9-]{4,40}$":
		return "4 to 40 letters, digits or '-'"
	case "^[0-9a-f]{64}$":
		return "64 lowercase hex digits"
	case "^[0-9]{4,16}$":
		return "4 to 16 digits"
	case "^[A-Za-z0-9+/]{43}=$":
		return "32 bytes in standard base64"
	case "^lethe\\+[0-9a-f]{8}\\+[A-Za-z0-9+/]{44}$":
		return "a note verifier key: lethe+<8 hex digits>+<base64>"
	case "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$":
		return "YYYY-MM-DD"
	case "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$":
		return "RFC 3339 with an upper-case T, and Z or an offset, such as 2006-01-02T15:04:05Z"
	case "^[^\\x00-\\x1F\\x7F]*$":
		return "no control characters"
	case "^[!-~]{1,64}$":
		return "1 to 64 printable ASCII characters without spaces"
	case "^[A-Za-z0-9+/]{32}$":
		return "32 characters of standard base64"
	case "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$":
		return "standard base64 with padding"
	case "^lethe/[A-Za-z0-9_./-]{1,120}$":
		return "lethe/ and up to 120 letters, digits, '_', '.', '/' or '-'"
	case "^[A-Za-z0-9_-]{1,64}(\\.[A-Za-z0-9_-]{1,64})*$":
		return "dot-separated tokens of letters, digits, '_' or '-'"
	case "^[a-z_]{1,32}$":
		return "1 to 32 lowercase letters or '_'"
	case "^[A-Za-z0-9_.-]{1,64}$":
		return "1 to 64 letters, digits, '.', '_' or '-'"
	}
	return ""
}

// validateDateTime accepts exactly the RFC 3339 strings that encoding/json decodes into a
// time.Time (the schemas' pattern fixes the shape; this rejects dates such as 02-30).
func validateDateTime(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	return validateDateTimeString(s)
}

var errNotDateTime = errors.New("not an RFC 3339 date-time")

func validateDateTimeString(s string) error {
	if _, err := time.Parse(time.RFC3339, s); err != nil {
		return errNotDateTime
	}
	return nil
}

// validateInteger accepts a JSON number written as a plain integer, without fraction or
// exponent, as encoding/json requires to decode into an int64 or a uint64. JSON Schema's
// "integer" alone also admits 1.0 and 1e2. The range is left to minimum and maximum,
// which every integer of the schemas sets within the Go type's range.
func validateInteger(v any) error {
	n, ok := v.(json.Number)
	if !ok {
		return nil
	}
	if !plainInteger(string(n)) {
		return errors.New("not a plain integer")
	}
	return nil
}

// plainInteger reports whether s is an optional minus sign and digits.
func plainInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && strings.Trim(s, "0123456789") == ""
}
