package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxDepth bounds the nesting of a decoded document. The deepest Lethe shape (an envelope
// holding a sealed reference) is four levels; anything near this limit is an attack.
const maxDepth = 32

// DecodeStrict decodes exactly one JSON value from raw into v with encoding/json, refusing
// unknown fields, repeated property names and anything after the value. Use it after
// Validator.Command or Validator.Event accepted raw: the schemas fix property names exactly,
// which encoding/json alone would match case-insensitively. Callers bound the size of raw.
//
// Every failure is a *Error with CodeInvalid whose message names at most the JSON location,
// never a value or an unknown property name.
func DecodeStrict(raw []byte, v any) error {
	if err := decodeInto(raw, v); err != nil {
		var inv *json.InvalidUnmarshalError
		if errors.As(err, &inv) {
			return Errorf(CodeInternal, "decode into a non-pointer")
		}
		return Errorf(CodeInvalid, "invalid JSON: %s", decodeProblem(err))
	}
	if err := checkKeys(raw); err != nil {
		return Errorf(CodeInvalid, "invalid JSON: %s", err.Error())
	}
	return nil
}

// decodeInto decodes exactly one value from raw into v, refusing unknown fields.
func decodeInto(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

// problem is a decoding failure whose text is safe to show: it holds no input value.
type problem string

func (p problem) Error() string { return string(p) }

const errTrailing problem = "data after the top-level value"

// decodeProblem describes an encoding/json error without the values that its own text
// may quote (time.ParseError, UnmarshalTypeError and the unknown-field error all do).
func decodeProblem(err error) string {
	var (
		p      problem
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tm     *time.ParseError
		b64    base64.CorruptInputError
	)
	switch {
	case errors.As(err, &p):
		return string(p)
	case errors.Is(err, io.EOF):
		return "empty input"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	case errors.As(err, &syntax):
		return "malformed JSON at byte " + strconv.FormatInt(syntax.Offset, 10)
	case errors.As(err, &typ):
		return where(fieldPointer(typ.Field)) + " has the wrong type"
	case errors.As(err, &tm):
		return "a date-time is not RFC 3339"
	case errors.As(err, &b64):
		return "malformed base64"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown property"
	}
	return "a value does not fit its field"
}

// fieldPointer turns encoding/json's dotted field path into a JSON pointer of safe tokens.
func fieldPointer(field string) string {
	if field == "" {
		return ""
	}
	var b strings.Builder
	for tok := range strings.SplitSeq(field, ".") {
		b.WriteByte('/')
		b.WriteString(safeName(tok))
	}
	return b.String()
}

// decodeTree decodes exactly one JSON value from raw into the generic form the schema
// validator takes: map[string]any, []any, json.Number, string, bool and nil (numbers stay
// json.Number, as jsonschema.UnmarshalJSON does, so no precision is lost). Then it runs
// checkKeys, and returns the span of raw that holds the value of the top-level property
// named member, or -1, -1 if there is none.
func decodeTree(raw []byte, member string) (tree any, start, end int, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return nil, -1, -1, problem(decodeProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, -1, -1, errTrailing
	}
	start, end, err = walkKeys(raw, member)
	if err != nil {
		return nil, -1, -1, err
	}
	return tree, start, end, nil
}

// checkKeys refuses, in raw, one valid JSON value (encoding/json has decoded it), nesting
// deeper than maxDepth and a repeated property name: the same name twice, or two names
// that encoding/json would match to the same struct field (it matches case-insensitively).
// encoding/json keeps the last of two equal keys in a map but merges two objects under the
// same key into one struct, so with duplicates the validator would check one object while
// the program used another.
func checkKeys(raw []byte) error {
	_, _, err := walkKeys(raw, "")
	return err
}

// walkKeys is checkKeys that also returns the span of raw holding the value of the
// top-level object's property named member (an object or array), or -1, -1.
func walkKeys(raw []byte, member string) (start, end int, err error) {
	var (
		stack     = make([]frame, 0, 8)
		path      = make([]string, 0, 8) // safe tokens of the current location, for messages
		expectKey bool                   // the next string in the current object is a name
		inMember  bool                   // the next value is member's
	)
	start, end = -1, -1
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '{', '[':
			if len(stack) >= maxDepth {
				return -1, -1, problem("JSON nested more than " + strconv.Itoa(maxDepth) + " levels deep")
			}
			if inMember {
				start, inMember = i, false
			}
			stack = append(stack, frame{object: c == '{'})
			expectKey = c == '{'
			if c == '[' {
				path = append(path, "0")
			}
		case '}', ']':
			if c == ']' || stack[len(stack)-1].named {
				path = path[:len(path)-1]
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 1 && start >= 0 && end < 0 {
				end = i + 1
			}
		case ',':
			top := &stack[len(stack)-1]
			if top.object {
				expectKey = true
				path = path[:len(path)-1]
			} else {
				top.index++
				path[len(path)-1] = strconv.Itoa(top.index)
			}
		case '"':
			q := stringEnd(raw, i)
			if expectKey {
				expectKey = false
				key := raw[i+1 : q]
				if bytes.IndexByte(key, '\\') >= 0 {
					var name string
					if err := json.Unmarshal(raw[i:q+1], &name); err != nil {
						return -1, -1, problem("malformed JSON at byte " + strconv.Itoa(i))
					}
					key = []byte(name)
				}
				path = append(path, safeName(string(key)))
				if stack[len(stack)-1].seen(foldKey(key)) {
					return -1, -1, problem(where(pointer(path)) + " is a repeated property")
				}
				inMember = len(stack) == 1 && member != "" && string(key) == member
			} else {
				inMember = false
			}
			i = q
		case ' ', '\t', '\n', '\r', ':':
		default: // a number or a literal
			inMember = false
		}
	}
	return start, end, nil
}

// frame is an object or array that walkKeys is inside.
type frame struct {
	object bool
	named  bool                // the object has a name so far
	index  int                 // of the current element, in an array
	keys   [][]byte            // folded names seen, in an object
	set    map[string]struct{} // the same, once there are many
}

// seen records a folded name and reports whether the object had it already. Names are
// kept in a slice while few (Lethe's objects have at most ten) and in a map beyond, so a
// hostile object with thousands of names costs linear time.
func (f *frame) seen(name []byte) bool {
	f.named = true
	if f.set != nil {
		if _, ok := f.set[string(name)]; ok {
			return true
		}
		f.set[string(name)] = struct{}{}
		return false
	}
	for _, k := range f.keys {
		if bytes.Equal(k, name) {
			return true
		}
	}
	if f.keys == nil {
		f.keys = make([][]byte, 0, 8)
	}
	f.keys = append(f.keys, name)
	if len(f.keys) > 16 {
		f.set = make(map[string]struct{}, 2*len(f.keys))
		for _, k := range f.keys {
			f.set[string(k)] = struct{}{}
		}
	}
	return false
}

// stringEnd returns the index of the quote that closes the JSON string opening at
// raw[start]. raw is valid JSON.
func stringEnd(raw []byte, start int) int {
	for i := start + 1; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			i++ // skip the escaped character; a \u escape's hex digits need no care
		case '"':
			return i
		}
	}
	return len(raw) - 1
}

// foldKey maps a property name to a representative of the names encoding/json would match
// to the same struct field. encoding/json folds ASCII letters to upper case and any other
// rune to the smallest rune of its case-fold set (the Kelvin sign to K); foldKey does the
// same but ends with ASCII letters in lower case, so the usual lowercase name is its own
// representative and costs no allocation.
func foldKey(key []byte) []byte {
	plain := true
	for _, c := range key {
		if c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			plain = false
			break
		}
	}
	if plain {
		return key
	}
	out := make([]byte, 0, len(key))
	for _, r := range string(key) {
		if r >= utf8.RuneSelf {
			for {
				next := unicode.SimpleFold(r)
				if next <= r {
					r = next
					break
				}
				r = next
			}
		}
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		out = utf8.AppendRune(out, r)
	}
	return out
}

// safeName returns a property name if it may appear in an error message: 1 to 40
// lowercase letters and underscores, like every name in Lethe's schemas. Anything else
// could be whatever a client typed, a card number or PIN included, and prints as "?".
func safeName(name string) string {
	if len(name) == 0 || len(name) > 40 {
		return "?"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != '_' && (c < 'a' || c > 'z') {
			return "?"
		}
	}
	return name
}

// safeToken is safeName that also lets through an array index of up to 5 digits. Use it
// only on locations the schema validator reports: it descends only into properties its
// schemas name, so a token of digits there is an index.
func safeToken(tok string) string {
	if len(tok) > 0 && len(tok) <= 5 && strings.Trim(tok, "0123456789") == "" {
		return tok
	}
	return safeName(tok)
}

// pointer joins safe tokens into a JSON pointer.
func pointer(toks []string) string {
	if len(toks) == 0 {
		return ""
	}
	return "/" + strings.Join(toks, "/")
}

// where names a location in a message: its pointer, or "the document" for the root.
func where(ptr string) string {
	if ptr == "" {
		return "the document"
	}
	return ptr
}
