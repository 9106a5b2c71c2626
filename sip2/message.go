// Package sip2 is Lethe's SIP2 gateway: the 3M Standard Interchange Protocol 2.00 that
// self-check machines speak, over TCP (TLS off loopback), turned into the same ledger
// commands, policy decisions and access record as the NATS kiosk API.
//
// # The wire format (SIP2 2.00)
//
// A message is a line of text ended by a carriage return ('\r'; a '\n' after it is
// tolerated and dropped). It starts with a two-digit message id, then the message's
// fixed-length fields in the order and widths of the spec (layouts below), then variable
// fields: a two-letter field id, the value, and the field delimiter ('|' unless
// configured). With error detection on, a message ends with "AY" and one digit (the
// sequence number) and "AZ" and four upper-case hex digits (the checksum):
//
//	11YN20261130    131900                  AOlethe|AA21000000000001|AB30000001|AC|AY3AZEDCF
//
// The checksum is the two's complement of the 16-bit sum of every byte of the message
// from its first byte through "AZ" inclusive, so the 16-bit sum of those bytes and the
// checksum's value is zero. It is computed on the bytes as sent, before any decoding.
//
// Dates are 18 characters, YYYYMMDDZZZZHHMMSS, where ZZZZ is four spaces for the
// library's local time or "   Z" for UTC. Lethe writes UTC.
//
// Text is UTF-8; a message that is not valid UTF-8 is read as ISO-8859-1, which many
// machines still send (every byte is a character there, so nothing is refused for its
// encoding). Replies are written in the configured encoding.
package sip2

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Message is one SIP2 message: its id, its fixed-length part and its variable fields.
type Message struct {
	ID     string  // two digits: "11"
	Fixed  string  // the fixed-length fields, concatenated, exactly as long as the layout
	Fields []Field // the variable fields, in order
	// Seq is the sequence number (AY), -1 when the message has none. Checksum reports
	// whether it carried (requests) or is to carry (replies) a checksum (AZ).
	Seq      int
	Checksum bool
}

// Field is one variable field: a two-letter id and a value.
type Field struct {
	Code  string
	Value string
}

// Get returns the first value of a variable field and whether it was present.
func (m Message) Get(code string) (string, bool) {
	for _, f := range m.Fields {
		if f.Code == code {
			return f.Value, true
		}
	}
	return "", false
}

// Value returns the first value of a variable field, or "".
func (m Message) Value(code string) string {
	v, _ := m.Get(code)
	return v
}

// Fix returns a fixed-length field by its name in the message's layout, or "".
func (m Message) Fix(name string) string {
	off := 0
	for _, f := range layouts[m.ID] {
		if f.name == name {
			if off+f.n <= len(m.Fixed) {
				return m.Fixed[off : off+f.n]
			}
			return ""
		}
		off += f.n
	}
	return ""
}

// fixed is one fixed-length field of a layout.
type fixed struct {
	name string
	n    int
}

// Message ids: requests (self-check to Lethe) and responses (Lethe to self-check).
const (
	IDPatronStatus   = "23"
	IDPatronStatusR  = "24"
	IDCheckout       = "11"
	IDCheckoutR      = "12"
	IDCheckin        = "09"
	IDCheckinR       = "10"
	IDBlockPatron    = "01"
	IDSCStatus       = "99"
	IDACSStatus      = "98"
	IDRequestResend  = "96" // either side asks the other to send its last message again
	IDRequestACSRsnd = "97" // the self-check asks Lethe to send its last response again
	IDLogin          = "93"
	IDLoginR         = "94"
	IDPatronInfo     = "63"
	IDPatronInfoR    = "64"
	IDEndSession     = "35"
	IDEndSessionR    = "36"
	IDFeePaid        = "37"
	IDFeePaidR       = "38"
	IDItemInfo       = "17"
	IDItemInfoR      = "18"
	IDItemStatus     = "19"
	IDItemStatusR    = "20"
	IDPatronEnable   = "25"
	IDPatronEnableR  = "26"
	IDHold           = "15"
	IDHoldR          = "16"
	IDRenew          = "29"
	IDRenewR         = "30"
	IDRenewAll       = "65"
	IDRenewAllR      = "66"
)

// date is the 18-character date and time field.
var date = 18

// layouts are the fixed-length fields of every SIP2 2.00 message, in order.
var layouts = map[string][]fixed{
	// requests
	IDPatronStatus:   {{"language", 3}, {"transaction date", date}},
	IDCheckout:       {{"SC renewal policy", 1}, {"no block", 1}, {"transaction date", date}, {"nb due date", date}},
	IDCheckin:        {{"no block", 1}, {"transaction date", date}, {"return date", date}},
	IDBlockPatron:    {{"card retained", 1}, {"transaction date", date}},
	IDSCStatus:       {{"status code", 1}, {"max print width", 3}, {"protocol version", 4}},
	IDRequestResend:  nil,
	IDRequestACSRsnd: nil,
	IDLogin:          {{"UID algorithm", 1}, {"PWD algorithm", 1}},
	IDPatronInfo:     {{"language", 3}, {"transaction date", date}, {"summary", 10}},
	IDEndSession:     {{"transaction date", date}},
	IDFeePaid:        {{"transaction date", date}, {"fee type", 2}, {"payment type", 2}, {"currency type", 3}},
	IDItemInfo:       {{"transaction date", date}},
	IDItemStatus:     {{"transaction date", date}},
	IDPatronEnable:   {{"transaction date", date}},
	IDHold:           {{"hold mode", 1}, {"transaction date", date}},
	IDRenew:          {{"third party allowed", 1}, {"no block", 1}, {"transaction date", date}, {"nb due date", date}},
	IDRenewAll:       {{"transaction date", date}},
	// responses
	IDPatronStatusR: {{"patron status", 14}, {"language", 3}, {"transaction date", date}},
	IDCheckoutR:     {{"ok", 1}, {"renewal ok", 1}, {"magnetic media", 1}, {"desensitize", 1}, {"transaction date", date}},
	IDCheckinR:      {{"ok", 1}, {"resensitize", 1}, {"magnetic media", 1}, {"alert", 1}, {"transaction date", date}},
	IDACSStatus: {{"on-line status", 1}, {"checkin ok", 1}, {"checkout ok", 1}, {"ACS renewal policy", 1},
		{"status update ok", 1}, {"off-line ok", 1}, {"timeout period", 3}, {"retries allowed", 3},
		{"date / time sync", date}, {"protocol version", 4}},
	IDLoginR: {{"ok", 1}},
	IDPatronInfoR: {{"patron status", 14}, {"language", 3}, {"transaction date", date},
		{"hold items count", 4}, {"overdue items count", 4}, {"charged items count", 4},
		{"fine items count", 4}, {"recall items count", 4}, {"unavailable holds count", 4}},
	IDEndSessionR:   {{"end session", 1}, {"transaction date", date}},
	IDFeePaidR:      {{"payment accepted", 1}, {"transaction date", date}},
	IDItemInfoR:     {{"circulation status", 2}, {"security marker", 2}, {"fee type", 2}, {"transaction date", date}},
	IDItemStatusR:   {{"item properties ok", 1}, {"transaction date", date}},
	IDPatronEnableR: {{"patron status", 14}, {"language", 3}, {"transaction date", date}},
	IDHoldR:         {{"ok", 1}, {"available", 1}, {"transaction date", date}},
	IDRenewR:        {{"ok", 1}, {"renewal ok", 1}, {"magnetic media", 1}, {"desensitize", 1}, {"transaction date", date}},
	IDRenewAllR:     {{"ok", 1}, {"renewed count", 4}, {"unrenewed count", 4}, {"transaction date", date}},
}

// requests are the ids a self-check may send.
var requests = map[string]bool{
	IDPatronStatus: true, IDCheckout: true, IDCheckin: true, IDBlockPatron: true, IDSCStatus: true,
	IDRequestResend: true, IDRequestACSRsnd: true, IDLogin: true, IDPatronInfo: true, IDEndSession: true,
	IDFeePaid: true, IDItemInfo: true, IDItemStatus: true, IDPatronEnable: true, IDHold: true,
	IDRenew: true, IDRenewAll: true,
}

// FixedLen is the length of a message id's fixed part, and whether the id is known.
func FixedLen(id string) (int, bool) {
	l, ok := layouts[id]
	n := 0
	for _, f := range l {
		n += f.n
	}
	return n, ok
}

// Parse errors. They never carry the message's text: it may hold a card number or PIN.
var (
	ErrEmpty       = errors.New("sip2: empty message")
	ErrUnknownID   = errors.New("sip2: unknown message id")
	ErrShortFixed  = errors.New("sip2: message shorter than its fixed-length fields")
	ErrBadFixed    = errors.New("sip2: fixed-length field is not printable ASCII")
	ErrBadChecksum = errors.New("sip2: checksum does not match")
	ErrBadField    = errors.New("sip2: variable field without a two-letter id")
	ErrBadSequence = errors.New("sip2: sequence number is not one digit")
)

// Checksum is the SIP2 checksum of b (which ends with "AZ"): the two's complement of
// the 16-bit sum of its bytes, as four upper-case hex digits.
func Checksum(b []byte) string {
	var sum uint16
	for _, c := range b {
		sum += uint16(c)
	}
	return fmt.Sprintf("%04X", -sum)
}

// Parse reads one request, without its terminator, as it came off the wire. The
// checksum, if any, is verified on these bytes; then the text is decoded (UTF-8, or
// ISO-8859-1 when it is not valid UTF-8) and split. A message whose id is not a request
// is ErrUnknownID, and its Message carries the id for the answer.
func Parse(raw []byte, delim byte) (Message, error) {
	m := Message{Seq: -1}
	if len(raw) < 2 {
		return m, ErrEmpty
	}
	m.ID = string(raw[:2])
	if !requests[m.ID] {
		return m, ErrUnknownID
	}
	body := raw
	// The checksum: "AZ" and four hex digits at the very end.
	if n := len(body); n >= 8 && string(body[n-6:n-4]) == "AZ" && isHex(body[n-4:]) {
		if Checksum(body[:n-4]) != strings.ToUpper(string(body[n-4:])) {
			return m, ErrBadChecksum
		}
		m.Checksum = true
		body = body[:n-6]
	}
	// The sequence number: "AY" and one digit, at the end, before the checksum.
	if n := len(body); n >= 5 && string(body[n-3:n-1]) == "AY" && (m.Checksum || body[n-4] == delim) {
		if body[n-1] < '0' || body[n-1] > '9' {
			return m, ErrBadSequence
		}
		m.Seq = int(body[n-1] - '0')
		body = body[:n-3]
	}
	flen, _ := FixedLen(m.ID)
	if len(body) < 2+flen {
		return m, ErrShortFixed
	}
	for _, c := range body[2 : 2+flen] {
		if c < ' ' || c > '~' {
			return m, ErrBadFixed
		}
	}
	m.Fixed = string(body[2 : 2+flen])
	rest := decode(body[2+flen:])
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, string(rune(delim)))
		if part == "" {
			continue
		}
		if len(part) < 2 {
			return m, ErrBadField
		}
		f := Field{Code: part[:2], Value: part[2:]}
		if f.Code == "AY" && m.Seq < 0 && len(f.Value) == 1 && '0' <= f.Value[0] && f.Value[0] <= '9' {
			// Some machines write the sequence number as a field of its own: "|AY1|AZ…".
			m.Seq = int(f.Value[0] - '0')
			continue
		}
		m.Fields = append(m.Fields, f)
	}
	return m, nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// decode turns the bytes of a message into text: UTF-8 when they are valid UTF-8,
// otherwise ISO-8859-1, where every byte is a character.
func decode(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	s, err := charmap.ISO8859_1.NewDecoder().Bytes(b)
	if err != nil { // cannot happen: every byte is a character in ISO-8859-1
		return strings.ToValidUTF8(string(b), "?")
	}
	return string(s)
}

// Encoding is how replies are written: UTF8 or Latin1 (ISO-8859-1).
type Encoding string

// The encodings replies are written in.
const (
	UTF8   Encoding = "utf-8"
	Latin1 Encoding = "iso-8859-1"
)

// Encode writes a reply with the delimiter, in the encoding, with "AY"/"AZ" when m asks
// for them, and without the terminator. Values lose any delimiter, carriage return or
// line feed they hold (a title with '|' would otherwise end its field early); characters
// the encoding cannot write become '?'.
func Encode(m Message, delim byte, enc Encoding) ([]byte, error) {
	flen, ok := FixedLen(m.ID)
	if !ok || len(m.ID) != 2 {
		return nil, fmt.Errorf("sip2: encode unknown message id %q", m.ID)
	}
	if len(m.Fixed) != flen {
		return nil, fmt.Errorf("sip2: encode %s: fixed part is %d characters, want %d", m.ID, len(m.Fixed), flen)
	}
	var b strings.Builder
	b.WriteString(m.ID)
	b.WriteString(m.Fixed)
	clean := strings.NewReplacer(string(rune(delim)), " ", "\r", " ", "\n", " ")
	for _, f := range m.Fields {
		if len(f.Code) != 2 {
			return nil, fmt.Errorf("sip2: encode %s: field id %q is not two characters", m.ID, f.Code)
		}
		b.WriteString(f.Code)
		b.WriteString(clean.Replace(f.Value))
		b.WriteByte(delim)
	}
	out := []byte(b.String())
	if enc == Latin1 {
		out = toLatin1(b.String())
	}
	if m.Seq >= 0 {
		out = append(out, 'A', 'Y', byte('0'+m.Seq%10))
	}
	if m.Checksum {
		out = append(out, 'A', 'Z')
		out = append(out, Checksum(out)...)
	}
	return out, nil
}

func toLatin1(s string) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			r = '?'
		}
		out = append(out, byte(r))
	}
	return out
}

// FormatDate writes t as an 18-character SIP2 date in UTC: YYYYMMDD   ZHHMMSS.
func FormatDate(t time.Time) string {
	t = t.UTC()
	return t.Format("20060102") + "   Z" + t.Format("150405")
}

// ParseDate reads an 18-character SIP2 date. Four spaces for the zone mean loc (the
// library's time); "   Z" (or any zone ending in Z) means UTC. All blanks or zeros is
// no date (ok false). Anything else is an error.
func ParseDate(s string, loc *time.Location) (t time.Time, ok bool, err error) {
	if strings.Trim(s, " 0") == "" {
		return time.Time{}, false, nil
	}
	if len(s) != date {
		return time.Time{}, false, errors.New("sip2: a date is 18 characters")
	}
	zone := s[8:12]
	switch {
	case zone == "    ":
	case strings.TrimLeft(zone, " ") == "Z":
		loc = time.UTC
	default:
		return time.Time{}, false, errors.New("sip2: a date's zone is four spaces (local) or Z (UTC)")
	}
	t, err = time.ParseInLocation("20060102150405", s[:8]+s[12:], loc)
	if err != nil {
		return time.Time{}, false, errors.New("sip2: not a date")
	}
	return t, true, nil
}
