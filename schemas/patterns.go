package schemas

// Matchers for the patterns of Lethe's schemas, written out by hand for the fast path:
// Go's regexp engine costs about a microsecond a match, these a few nanoseconds. Each
// must match exactly the strings its pattern matches; TestFastPatterns and
// FuzzFastPatterns compare them with regexp on the schemas' own patterns. A pattern
// without a matcher here is matched with the library's compiled regexp.

// fastPattern returns the matcher of a pattern of the schemas, or nil.
func fastPattern(pattern string) func(string) bool {
	switch pattern {
	case "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$":
		return matchUUID
	case "^[A-Za-z0-9_-]{1,64}$":
		return func(s string) bool { return len(s) >= 1 && len(s) <= 64 && all(s, isTokenByte) }
	case "^[A-Za-z0-9-]{4,40}$":
		return func(s string) bool { return len(s) >= 4 && len(s) <= 40 && all(s, isCardByte) }
	case "^[0-9a-f]{64}$":
		return func(s string) bool { return len(s) == 64 && all(s, isLowerHex) }
	case "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$":
		return func(s string) bool { return len(s) == 10 && matchDate(s) }
	case "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$":
		return matchTimestamp
	case "^[^\\x00-\\x1F\\x7F]*$":
		return func(s string) bool { return all(s, func(c byte) bool { return c >= 0x20 && c != 0x7F }) }
	case "^[!-~]{1,64}$":
		return func(s string) bool {
			return len(s) >= 1 && len(s) <= 64 && all(s, func(c byte) bool { return '!' <= c && c <= '~' })
		}
	case "^[A-Za-z0-9+/]{32}$":
		return func(s string) bool { return len(s) == 32 && all(s, isBase64Byte) }
	case "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$":
		return matchBase64
	case "^lethe/[A-Za-z0-9_./-]{1,120}$":
		return func(s string) bool {
			const p = "lethe/"
			rest := len(s) - len(p)
			return rest >= 1 && rest <= 120 && s[:len(p)] == p &&
				all(s[len(p):], func(c byte) bool { return isTokenByte(c) || c == '.' || c == '/' })
		}
	case "^[A-Za-z0-9_-]{1,64}(\\.[A-Za-z0-9_-]{1,64})*$":
		return matchSubject
	case "^[a-z_]{1,32}$":
		return func(s string) bool {
			return len(s) >= 1 && len(s) <= 32 && all(s, func(c byte) bool { return 'a' <= c && c <= 'z' || c == '_' })
		}
	}
	return nil
}

// all reports whether every byte of s satisfies ok. Every class above is ASCII, so a byte
// of a multi-byte character never satisfies it, as its rune would not.
func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool     { return '0' <= c && c <= '9' }
func isLowerHex(c byte) bool  { return isDigit(c) || 'a' <= c && c <= 'f' }
func isAlnum(c byte) bool     { return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isTokenByte(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }
func isCardByte(c byte) bool  { return isAlnum(c) || c == '-' }
func isBase64Byte(c byte) bool {
	return isAlnum(c) || c == '+' || c == '/'
}

func matchUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isLowerHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// matchDate matches [0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) at the start of s
// (len(s) >= 10).
func matchDate(s string) bool {
	if !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[2]) || !isDigit(s[3]) || s[4] != '-' || s[7] != '-' {
		return false
	}
	switch m1, m2 := s[5], s[6]; {
	case m1 == '0' && '1' <= m2 && m2 <= '9', m1 == '1' && '0' <= m2 && m2 <= '2':
	default:
		return false
	}
	switch d1, d2 := s[8], s[9]; {
	case d1 == '0' && '1' <= d2 && d2 <= '9', (d1 == '1' || d1 == '2') && isDigit(d2), d1 == '3' && (d2 == '0' || d2 == '1'):
	default:
		return false
	}
	return true
}

// hhmm matches ([01][0-9]|2[0-3]):[0-5][0-9] at the start of s (len(s) >= 5).
func hhmm(s string) bool {
	switch h1, h2 := s[0], s[1]; {
	case (h1 == '0' || h1 == '1') && isDigit(h2), h1 == '2' && '0' <= h2 && h2 <= '3':
	default:
		return false
	}
	return s[2] == ':' && '0' <= s[3] && s[3] <= '5' && isDigit(s[4])
}

func matchTimestamp(s string) bool {
	// date T hh:mm:ss, at least 19 characters, then an optional fraction and the zone.
	if len(s) < 20 || !matchDate(s) || s[10] != 'T' || !hhmm(s[11:16]) || s[16] != ':' ||
		!('0' <= s[17] && s[17] <= '5') || !isDigit(s[18]) {
		return false
	}
	rest := s[19:]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		rest = rest[n:]
	}
	switch {
	case rest == "Z":
		return true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-'):
		return hhmm(rest[1:])
	}
	return false
}

func matchBase64(s string) bool {
	if len(s)%4 != 0 {
		return false
	}
	if len(s) == 0 {
		return true
	}
	if !all(s[:len(s)-4], isBase64Byte) {
		return false
	}
	last := s[len(s)-4:]
	switch {
	case all(last, isBase64Byte):
		return true
	case isBase64Byte(last[0]) && isBase64Byte(last[1]) && isBase64Byte(last[2]) && last[3] == '=':
		return true
	case isBase64Byte(last[0]) && isBase64Byte(last[1]) && last[2] == '=' && last[3] == '=':
		return true
	}
	return false
}

func matchSubject(s string) bool {
	n := 0 // length of the current token
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if n == 0 {
				return false
			}
			n = 0
		case isTokenByte(c):
			n++
			if n > 64 {
				return false
			}
		default:
			return false
		}
	}
	return n > 0
}
