package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The fast path. Checking an event with the JSON Schema library costs tens of
// microseconds, most of it in decoding into map[string]any and in the library's general
// machinery, so the validator first tries a fast path built from the same compiled
// schemas: a strict JSON parser into a small tree, and a checker for the keywords Lethe's
// schemas use (type, const, enum, format, $ref, properties, required,
// additionalProperties, items, min/maxItems, min/maxProperties, min/maxLength, pattern,
// minimum, maximum, allOf, anyOf, oneOf, not, if/then/else).
//
// The fast path only ever accepts. Whatever it does not accept (invalid input, or input
// it does not handle: escapes it leaves to encoding/json, invalid UTF-8, numbers with a
// fraction or exponent, very long integers, deep nesting, repeated names) goes to the
// library's path exactly as before, which decides and words the refusal. So the library
// stays the reference: the fast path must never accept what the library refuses, and
// TestFastAgreesWithLibrary and FuzzFastAgreesWithLibrary check that it does not. A schema
// with a keyword the fast checker does not know is never checked fast at all.

// jkind is the kind of a parsed JSON value.
type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

// jval is a parsed JSON value. Numbers keep their literal in s; the fast parser admits
// only plain integers, so n holds the value. The members of an object and the elements
// of an array are the tree's nodes lo to hi; a member carries its name in key. Strings
// without escapes share the input's memory: a tree lives only as long as one check.
type jval struct {
	key        string
	s          string
	n          int64
	start, end int32 // the span of the value in the input
	lo, hi     int32
	kind       jkind
	b          bool
}

// tree is a parsed document: its nodes, the root last.
type tree struct {
	nodes []jval
}

func (t *tree) root() *jval { return &t.nodes[len(t.nodes)-1] }

func (t *tree) kids(v *jval) []jval { return t.nodes[v.lo:v.hi] }

func (t *tree) member(v *jval, name string) *jval {
	for i := v.lo; i < v.hi; i++ {
		if t.nodes[i].key == name {
			return &t.nodes[i]
		}
	}
	return nil
}

// errBail means the fast path does not decide this input; the library's path does.
var errBail = errors.New("not for the fast path")

// parserPool reuses parsers: a parse allocates nothing once the pool is warm.
type parserPool struct{ sync.Pool }

// parse parses raw as exactly one JSON value, as strictly as encoding/json or more.
// Call done on the parser when finished with the tree.
func (pp *parserPool) parse(raw []byte) (*parser, error) {
	p, _ := pp.Get().(*parser)
	if p == nil {
		p = &parser{}
	}
	p.pool = pp
	p.raw, p.i = raw, 0
	p.t.nodes, p.stack = p.t.nodes[:0], p.stack[:0]
	if len(raw) > math.MaxInt32 {
		p.done()
		return nil, errBail
	}
	p.space()
	v, err := p.value(0)
	if err == nil {
		p.space()
		if p.i != len(p.raw) {
			err = errBail
		}
	}
	if err != nil {
		p.done()
		return nil, err
	}
	p.t.nodes = append(p.t.nodes, v)
	return p, nil
}

type parser struct {
	pool  *parserPool
	raw   []byte
	i     int
	t     tree
	stack []jval // members and elements of the containers being read
	high  int    // the most of stack used since the parser left the pool
}

func (p *parser) done() {
	p.raw = nil
	if cap(p.t.nodes) > 4096 || cap(p.stack) > 4096 {
		return // a huge document: let its memory go
	}
	// Drop the references into the input before the parser waits in the pool.
	clear(p.t.nodes)
	clear(p.stack[:p.high])
	p.high = 0
	p.pool.Put(p)
}

func (p *parser) space() {
	for p.i < len(p.raw) {
		switch p.raw[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (jval, error) {
	if p.i >= len(p.raw) {
		return jval{}, errBail
	}
	start := int32(p.i)
	switch c := p.raw[p.i]; {
	case c == '{':
		if depth >= maxDepth {
			return jval{}, errBail
		}
		return p.container(depth+1, jObject, '}')
	case c == '[':
		if depth >= maxDepth {
			return jval{}, errBail
		}
		return p.container(depth+1, jArray, ']')
	case c == '"':
		s, err := p.string()
		return jval{kind: jString, s: s, start: start, end: int32(p.i)}, err
	case c == 't':
		return p.literal("true", jval{kind: jBool, b: true})
	case c == 'f':
		return p.literal("false", jval{kind: jBool})
	case c == 'n':
		return p.literal("null", jval{kind: jNull})
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	return jval{}, errBail
}

func (p *parser) literal(word string, v jval) (jval, error) {
	if !bytes.HasPrefix(p.raw[p.i:], []byte(word)) {
		return jval{}, errBail
	}
	v.start = int32(p.i)
	p.i += len(word)
	v.end = int32(p.i)
	return v, nil
}

// number admits a plain integer: an optional minus and digits without a leading zero, at
// most 18 digits, so that it fits an int64. Anything else is left to the library.
func (p *parser) number() (jval, error) {
	start := p.i
	neg := p.raw[p.i] == '-'
	if neg {
		p.i++
	}
	digits := p.i
	var n int64
	for p.i < len(p.raw) && '0' <= p.raw[p.i] && p.raw[p.i] <= '9' {
		n = n*10 + int64(p.raw[p.i]-'0')
		p.i++
	}
	nd := p.i - digits
	switch {
	case nd == 0 || nd > 18:
		return jval{}, errBail
	case nd > 1 && p.raw[digits] == '0':
		return jval{}, errBail // a leading zero: not JSON
	}
	if p.i < len(p.raw) {
		switch p.raw[p.i] {
		case '.', 'e', 'E':
			return jval{}, errBail
		}
	}
	if neg {
		n = -n
	}
	return jval{kind: jNumber, n: n, s: alias(p.raw[start:p.i]), start: int32(start), end: int32(p.i)}, nil
}

// alias is b as a string without a copy. The tree's strings live only during one check,
// while the caller's input is not modified.
func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// string reads a string at p.i and returns its value as encoding/json decodes it. It
// leaves to the library: control characters (not JSON), invalid UTF-8 (which
// encoding/json replaces) and \u escapes of surrogates.
func (p *parser) string() (string, error) {
	p.i++ // the opening quote
	start := p.i
	ascii := true
	for p.i < len(p.raw) {
		c := p.raw[p.i]
		if plainStringByte(c) {
			p.i++
			continue
		}
		switch {
		case c == '"':
			seg := p.raw[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(seg) {
				return "", errBail
			}
			return alias(seg), nil
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			return "", errBail
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return "", errBail
}

// escaped finishes a string that holds an escape, from its content's start.
func (p *parser) escaped(start int) (string, error) {
	out := make([]byte, 0, p.i-start+16)
	out = append(out, p.raw[start:p.i]...)
	for p.i < len(p.raw) {
		c := p.raw[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(out) {
				return "", errBail
			}
			return string(out), nil
		case c < 0x20:
			return "", errBail
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.raw) {
			return "", errBail
		}
		e := p.raw[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if p.i+4 > len(p.raw) || !isHex4(p.raw[p.i:p.i+4]) {
				return "", errBail
			}
			r, err := strconv.ParseUint(string(p.raw[p.i:p.i+4]), 16, 32)
			if err != nil {
				return "", errBail
			}
			if 0xD800 <= r && r < 0xE000 {
				return "", errBail // a surrogate: encoding/json's pairing rules
			}
			out = utf8.AppendRune(out, rune(r))
			p.i += 4
		default:
			return "", errBail
		}
	}
	return "", errBail
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// container reads an object or an array. In an object, a name with an escape, a repeated
// name (folded as encoding/json matches names) or more than sixteen names are left to
// the library.
func (p *parser) container(depth int, kind jkind, closer byte) (jval, error) {
	v := jval{kind: kind, start: int32(p.i)}
	p.i++
	p.space()
	mark := len(p.stack)
	if p.i < len(p.raw) && p.raw[p.i] == closer {
		p.i++
		v.end = int32(p.i)
		v.lo, v.hi = int32(len(p.t.nodes)), int32(len(p.t.nodes))
		return v, nil
	}
	var folded [16][]byte
	for {
		var key string
		if kind == jObject {
			n := len(p.stack) - mark
			if p.i >= len(p.raw) || p.raw[p.i] != '"' || n >= len(folded) {
				return jval{}, errBail
			}
			kstart := p.i + 1
			var err error
			if key, err = p.string(); err != nil {
				return jval{}, err
			}
			name := p.raw[kstart : p.i-1]
			if bytes.IndexByte(name, '\\') >= 0 {
				return jval{}, errBail
			}
			fk := foldKey(name)
			for _, k := range folded[:n] {
				if bytes.Equal(k, fk) {
					return jval{}, errBail
				}
			}
			folded[n] = fk
			p.space()
			if p.i >= len(p.raw) || p.raw[p.i] != ':' {
				return jval{}, errBail
			}
			p.i++
			p.space()
		}
		val, err := p.value(depth)
		if err != nil {
			return jval{}, err
		}
		val.key = key
		p.stack = append(p.stack, val)
		p.high = max(p.high, len(p.stack))
		p.space()
		if p.i >= len(p.raw) {
			return jval{}, errBail
		}
		switch p.raw[p.i] {
		case ',':
			p.i++
			p.space()
		case closer:
			p.i++
			v.end = int32(p.i)
			v.lo = int32(len(p.t.nodes))
			p.t.nodes = append(p.t.nodes, p.stack[mark:]...)
			v.hi = int32(len(p.t.nodes))
			p.stack = p.stack[:mark]
			return v, nil
		default:
			return jval{}, errBail
		}
	}
}

// fnode is a compiled schema for the fast checker.
type fnode struct {
	boolean  int8 // 1: the schema true, -1: the schema false, 0: neither
	types    uint8
	consts   []any // const (one value) or enum values: strings, booleans or nil only
	hasConst bool
	format   *jsonschema.Format
	// formatString is Lethe's own check of a format it registers, called without boxing
	// the string; the library's Format.Validate otherwise.
	formatString func(string) error
	ref          *fnode

	props    []fprop
	required []string
	reqMask  uint64   // the props that are required, as bits of their index
	reqOther []string // required names that are not among props
	addlNone bool     // additionalProperties: false
	addl     *fnode   // additionalProperties: a schema
	minProps int
	maxProps int

	items    *fnode
	minItems int
	maxItems int

	minLen  int
	maxLen  int
	pattern func(string) bool

	min, max, exMin, exMax *bound

	allOf, anyOf, oneOf []*fnode
	not                 *fnode
	ifS, thenS, elseS   *fnode
}

type fprop struct {
	name string
	node *fnode
}

// bound is a numeric limit; the fast parser's numbers are int64, so a limit is compared
// as a rational only when it is not an integer that fits one.
type bound struct {
	rat   *big.Rat
	n     int64
	exact bool // rat is the integer n
}

func newBound(r *big.Rat) *bound {
	if r == nil {
		return nil
	}
	b := &bound{rat: r}
	if r.IsInt() && r.Num().IsInt64() {
		b.n, b.exact = r.Num().Int64(), true
	}
	return b
}

// cmp compares the integer x with the bound: -1, 0 or 1.
func (b *bound) cmp(x int64) int {
	if b.exact {
		switch {
		case x < b.n:
			return -1
		case x > b.n:
			return 1
		}
		return 0
	}
	return new(big.Rat).SetInt64(x).Cmp(b.rat)
}

// Type bits.
const (
	tNull uint8 = 1 << iota
	tBoolean
	tNumber
	tInteger
	tString
	tArray
	tObject
)

// typeBit returns the bit of a JSON Schema type name, or 0.
func typeBit(name string) uint8 {
	switch name {
	case "null":
		return tNull
	case "boolean":
		return tBoolean
	case "number":
		return tNumber
	case "integer":
		return tInteger
	case "string":
		return tString
	case "array":
		return tArray
	case "object":
		return tObject
	}
	return 0
}

// errUnsupported: the schema uses a keyword the fast checker does not implement.
var errUnsupported = errors.New("keyword not supported by the fast checker")

// fastCompile turns a library schema into a fast one, or fails with errUnsupported.
func fastCompile(s *jsonschema.Schema) (*fnode, error) {
	return (&fastCompiler{done: map[*jsonschema.Schema]*fnode{}}).compile(s)
}

type fastCompiler struct {
	done map[*jsonschema.Schema]*fnode
}

func (c *fastCompiler) compile(s *jsonschema.Schema) (*fnode, error) {
	if s == nil {
		return nil, nil
	}
	if n, ok := c.done[s]; ok {
		return n, nil // compiled, or being compiled (a recursive $ref)
	}
	n := &fnode{minProps: -1, maxProps: -1, minItems: -1, maxItems: -1, minLen: -1, maxLen: -1}
	c.done[s] = n
	if s.Bool != nil {
		n.boolean = -1
		if *s.Bool {
			n.boolean = 1
		}
		return n, nil
	}
	switch {
	case s.DraftVersion < 2019, s.RecursiveRef != nil, s.DynamicRef != nil,
		s.PropertyNames != nil, len(s.PatternProperties) > 0, len(s.Dependencies) > 0,
		len(s.DependentRequired) > 0, len(s.DependentSchemas) > 0,
		s.UnevaluatedProperties != nil, s.UnevaluatedItems != nil,
		s.Contains != nil, s.MinContains != nil, s.MaxContains != nil, s.UniqueItems,
		s.Items != nil, s.AdditionalItems != nil, len(s.PrefixItems) > 0,
		s.ContentEncoding != nil, s.ContentMediaType != nil, s.ContentSchema != nil,
		s.MultipleOf != nil, len(s.Extensions) > 0:
		return nil, fmt.Errorf("%w: %s", errUnsupported, s.Location)
	}
	if s.Types != nil {
		for _, t := range s.Types.ToStrings() {
			bit := typeBit(t)
			if bit == 0 {
				return nil, fmt.Errorf("%w: type %s", errUnsupported, t)
			}
			n.types |= bit
		}
	}
	simple := func(v any) bool {
		switch v.(type) {
		case string, bool, nil:
			return true
		}
		return false
	}
	if s.Const != nil {
		if !simple(*s.Const) {
			return nil, fmt.Errorf("%w: const %s", errUnsupported, s.Location)
		}
		n.consts, n.hasConst = []any{*s.Const}, true
	}
	if s.Enum != nil {
		if s.Const != nil {
			return nil, fmt.Errorf("%w: const and enum %s", errUnsupported, s.Location)
		}
		for _, v := range s.Enum.Values {
			if !simple(v) {
				return nil, fmt.Errorf("%w: enum %s", errUnsupported, s.Location)
			}
		}
		n.consts, n.hasConst = s.Enum.Values, true
	}
	n.format = s.Format
	if s.Format != nil {
		n.formatString = fastFormat(s.Format.Name)
	}
	var err error
	if n.ref, err = c.compile(s.Ref); err != nil {
		return nil, err
	}
	for name, ps := range s.Properties {
		pn, err := c.compile(ps)
		if err != nil {
			return nil, err
		}
		n.props = append(n.props, fprop{name, pn})
	}
	n.required = s.Required
	if len(n.props) > 64 {
		return nil, fmt.Errorf("%w: more than 64 properties %s", errUnsupported, s.Location)
	}
	for _, r := range s.Required {
		i := slices.IndexFunc(n.props, func(p fprop) bool { return p.name == r })
		if i < 0 {
			n.reqOther = append(n.reqOther, r)
		} else {
			n.reqMask |= 1 << i
		}
	}
	switch a := s.AdditionalProperties.(type) {
	case nil:
	case bool:
		n.addlNone = !a
	case *jsonschema.Schema:
		if n.addl, err = c.compile(a); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: additionalProperties %s", errUnsupported, s.Location)
	}
	setInt := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	setInt(&n.minProps, s.MinProperties)
	setInt(&n.maxProps, s.MaxProperties)
	setInt(&n.minItems, s.MinItems)
	setInt(&n.maxItems, s.MaxItems)
	setInt(&n.minLen, s.MinLength)
	setInt(&n.maxLen, s.MaxLength)
	if n.items, err = c.compile(s.Items2020); err != nil {
		return nil, err
	}
	if s.Pattern != nil {
		n.pattern = fastPattern(s.Pattern.String())
		if n.pattern == nil {
			n.pattern = s.Pattern.MatchString
		}
	}
	n.min, n.max, n.exMin, n.exMax = newBound(s.Minimum), newBound(s.Maximum), newBound(s.ExclusiveMinimum), newBound(s.ExclusiveMaximum)
	for _, list := range []struct {
		dst *[]*fnode
		src []*jsonschema.Schema
	}{{&n.allOf, s.AllOf}, {&n.anyOf, s.AnyOf}, {&n.oneOf, s.OneOf}} {
		for _, sub := range list.src {
			sn, err := c.compile(sub)
			if err != nil {
				return nil, err
			}
			*list.dst = append(*list.dst, sn)
		}
	}
	for _, p := range []struct {
		dst **fnode
		src *jsonschema.Schema
	}{{&n.not, s.Not}, {&n.ifS, s.If}, {&n.thenS, s.Then}, {&n.elseS, s.Else}} {
		if *p.dst, err = c.compile(p.src); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// valid reports whether v satisfies n, with the library's semantics for every keyword n
// has (draft 2020-12: $ref beside other keywords, integer as a number with no fraction).
func (n *fnode) valid(t *tree, v *jval) bool {
	if n.boolean != 0 {
		return n.boolean > 0
	}
	if n.types != 0 {
		var bit uint8
		switch v.kind {
		case jNull:
			bit = tNull
		case jBool:
			bit = tBoolean
		case jNumber:
			bit = tNumber | tInteger // the fast parser admits only integers
		case jString:
			bit = tString
		case jArray:
			bit = tArray
		case jObject:
			bit = tObject
		}
		if n.types&bit == 0 {
			return false
		}
	}
	if n.hasConst && !n.constMatch(v) {
		return false
	}
	if n.formatString != nil && v.kind == jString {
		if n.formatString(v.s) != nil {
			return false
		}
	} else if n.format != nil {
		var x any
		switch v.kind {
		case jString:
			x = v.s
		case jNumber:
			x = json.Number(v.s)
		case jBool:
			x = v.b
		case jNull:
			x = nil
		default:
			return false // the formats Lethe uses take strings and numbers; leave the rest
		}
		if n.format.Validate(x) != nil {
			return false
		}
	}
	if n.ref != nil && !n.ref.valid(t, v) {
		return false
	}
	switch v.kind {
	case jObject:
		if !n.objectValid(t, v) {
			return false
		}
	case jArray:
		if l := int(v.hi - v.lo); n.minItems >= 0 && l < n.minItems || n.maxItems >= 0 && l > n.maxItems {
			return false
		}
		if n.items != nil {
			kids := t.kids(v)
			for i := range kids {
				if !n.items.valid(t, &kids[i]) {
					return false
				}
			}
		}
	case jString:
		if n.minLen >= 0 || n.maxLen >= 0 {
			l := utf8.RuneCountInString(v.s)
			if n.minLen >= 0 && l < n.minLen || n.maxLen >= 0 && l > n.maxLen {
				return false
			}
		}
		if n.pattern != nil && !n.pattern(v.s) {
			return false
		}
	case jNumber:
		if n.min != nil && n.min.cmp(v.n) < 0 || n.max != nil && n.max.cmp(v.n) > 0 ||
			n.exMin != nil && n.exMin.cmp(v.n) <= 0 || n.exMax != nil && n.exMax.cmp(v.n) >= 0 {
			return false
		}
	}
	for _, s := range n.allOf {
		if !s.valid(t, v) {
			return false
		}
	}
	if len(n.anyOf) > 0 {
		ok := false
		for _, s := range n.anyOf {
			if s.valid(t, v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(n.oneOf) > 0 {
		matched := 0
		for _, s := range n.oneOf {
			if s.valid(t, v) {
				matched++
			}
		}
		if matched != 1 {
			return false
		}
	}
	if n.not != nil && n.not.valid(t, v) {
		return false
	}
	if n.ifS != nil {
		if n.ifS.valid(t, v) {
			if n.thenS != nil && !n.thenS.valid(t, v) {
				return false
			}
		} else if n.elseS != nil && !n.elseS.valid(t, v) {
			return false
		}
	}
	return true
}

func (n *fnode) constMatch(v *jval) bool {
	for _, c := range n.consts {
		switch c := c.(type) {
		case string:
			if v.kind == jString && v.s == c {
				return true
			}
		case bool:
			if v.kind == jBool && v.b == c {
				return true
			}
		case nil:
			if v.kind == jNull {
				return true
			}
		}
	}
	return false
}

func (n *fnode) objectValid(t *tree, v *jval) bool {
	if l := int(v.hi - v.lo); n.minProps >= 0 && l < n.minProps || n.maxProps >= 0 && l > n.maxProps {
		return false
	}
	// Names are unique (the parser leaves repeated names to the library), so the
	// required props are all present when each was seen once.
	var seen uint64
	kids := t.kids(v)
	for i := range kids {
		m := &kids[i]
		p := -1
		for j := range n.props {
			if n.props[j].name == m.key {
				p = j
				break
			}
		}
		switch {
		case p >= 0:
			seen |= 1 << p
			if !n.props[p].node.valid(t, m) {
				return false
			}
		case n.addlNone:
			return false
		case n.addl != nil:
			if !n.addl.valid(t, m) {
				return false
			}
		}
	}
	if seen&n.reqMask != n.reqMask {
		return false
	}
	for _, r := range n.reqOther {
		if t.member(v, r) == nil {
			return false
		}
	}
	return true
}

// fastSchemas are the fast forms of a Validator's schemas; nil where a schema uses a
// keyword the fast checker does not implement.
type fastSchemas struct {
	envelope *fnode
	events   map[string]*fnode
	commands map[string]*fnode
	replies  map[string]*fnode
}

func compileFast(v *Validator) fastSchemas {
	one := func(s *jsonschema.Schema) *fnode {
		n, err := fastCompile(s)
		if err != nil {
			return nil
		}
		return n
	}
	all := func(m map[string]*jsonschema.Schema) map[string]*fnode {
		out := make(map[string]*fnode, len(m))
		for name, s := range m {
			if n := one(s); n != nil {
				out[name] = n
			}
		}
		return out
	}
	return fastSchemas{envelope: one(v.envelope), events: all(v.events), commands: all(v.commands), replies: all(v.replies)}
}

// fastCheck reports whether raw, one JSON document, certainly satisfies n. False means
// only that the library must decide.
func (v *Validator) fastCheck(n *fnode, raw []byte) bool {
	if n == nil {
		return false
	}
	p, err := v.parsers.parse(raw)
	if err != nil {
		return false
	}
	defer p.done()
	return n.valid(&p.t, p.t.root())
}

// fastEvent decodes an event on the fast path. ok is false when the library must decide.
func (v *Validator) fastEvent(raw []byte) (ev Event, ok bool) {
	p, err := v.parsers.parse(raw)
	if err != nil {
		return Event{}, false
	}
	defer p.done()
	ev, _, ok = v.fastEventTree(raw, &p.t)
	return ev, ok
}

// fastEventTree checks the parsed event t and builds its Event; it also returns the data
// object's node.
func (v *Validator) fastEventTree(raw []byte, t *tree) (ev Event, data *jval, ok bool) {
	if v.fast.envelope == nil {
		return Event{}, nil, false
	}
	env := t.root()
	if !v.fast.envelope.valid(t, env) {
		return Event{}, nil, false
	}
	// The strings of the tree share raw; the Event gets its own copies.
	str := func(name string) string {
		if m := t.member(env, name); m != nil && m.kind == jString {
			return m.s
		}
		return ""
	}
	typ := str("type")
	data = t.member(env, "data")
	ds := v.fast.events[typ]
	if data == nil || ds == nil || str("dataschema") != DataSchema(typ) || !ds.valid(t, data) {
		return Event{}, nil, false
	}
	// Envelope values are names the schema fixes (interned), or copies.
	ev = Event{
		SpecVersion:     SpecVersion,
		ID:              strings.Clone(str("id")),
		Type:            eventType(typ),
		Source:          strings.Clone(str("source")),
		Subject:         strings.Clone(str("subject")),
		DataContentType: "application/json",
		DataSchema:      DataSchema(typ),
		CommandID:       strings.Clone(str("commandid")),
		Data:            bytes.Clone(raw[data.start:data.end]),
	}
	if err := ev.Time.UnmarshalText([]byte(str("time"))); err != nil {
		return Event{}, nil, false
	}
	return ev, data, true
}

// eventType returns the constant for a known event type, so an Event does not hold a
// copy of the input.
func eventType(typ string) string {
	switch typ {
	case TypeItemCataloged:
		return TypeItemCataloged
	case TypePatronRegistered:
		return TypePatronRegistered
	case TypeCardIssued:
		return TypeCardIssued
	case TypeCardReportedLost:
		return TypeCardReportedLost
	case TypePatronClosed:
		return TypePatronClosed
	case TypeItemCheckedOut:
		return TypeItemCheckedOut
	case TypeItemRenewed:
		return TypeItemRenewed
	case TypeItemReturned:
		return TypeItemReturned
	case TypeItemDeclaredLost:
		return TypeItemDeclaredLost
	case TypeItemDamaged:
		return TypeItemDamaged
	case TypeFineAssessed:
		return TypeFineAssessed
	case TypeFinePaid:
		return TypeFinePaid
	case TypeFineWaived:
		return TypeFineWaived
	case TypeTransactionClosed:
		return TypeTransactionClosed
	case TypeTransactionExpunged:
		return TypeTransactionExpunged
	}
	return strings.Clone(typ)
}

// fastFormat returns the check of a format Lethe registers (validate.go), taking the
// string directly: the same function the library calls through Format.Validate.
func fastFormat(name string) func(string) error {
	switch name {
	case "date-time":
		return validateDateTimeString
	}
	return nil
}

// plainStringByte reports whether c is a byte a string holds as it is: printable ASCII
// other than the quote and the backslash.
func plainStringByte(c byte) bool { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' }
