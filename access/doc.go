// Package access is the access record of Policy 1002: one entry for every disclosure of a
// patron's data and every refusal, on its own append-only stream (ACCESS, subject
// access.entry), apart from circulation.
//
// # Invariants
//
//   - Every field of an entry is bound by the ledger's MAC: HMAC-SHA256 under the
//     keystore's system key "access-mac" (keystore.AccessMAC). An entry that does not
//     decode, or whose MAC does not verify, is listed as Unreadable, with its stream
//     sequence and a fixed reason; never as genuine, and never with its bytes.
//   - Two entries about one patron share no value derived from the patron: each patron
//     reference has a fresh random pseudonym (kid), nonce and ciphertext.
//   - No patron id and no court order's reference is ever in the clear on the stream.
//
// # Format
//
// An entry is one JSON object (at most 64 KiB) published on access.entry, with its id as
// Nats-Msg-Id. Its properties, in the order the MAC takes them:
//
//	id            the entry's UUIDv7
//	time          when the request was decided (RFC 3339, UTC)
//	staff         the staff account, or "kiosk <branch>/<id>"
//	role          the requester's policy.Role
//	action        what was asked: "lookup", "patron_info", "checkout", ...
//	basis         the policy.Basis stated, "" if none
//	scope         the policy.Scope applied, "refused" for a refusal
//	outcome       "disclosed" or "refused"
//	clause        the clause of Policy 1002 that granted or refused
//	requests      optional: how many requests a summary entry stands for (a kiosk's card
//	              lookups that opened no account, over a window); absent means one
//	patrons       optional: one sealed reference {kid, nonce, ct} per patron named
//	order_sealed  optional: a court order's reference, sealed {kid, nonce, ct}
//	mac           the MAC below, 32 bytes in standard base64
//
// An entry with an unknown or repeated property (schemas.DecodeStrict), without an id or
// without a 32-byte mac is not well-formed; nonce and ct are standard base64.
//
// A patron reference is the patron's internal id sealed under the patron's profile key
// with a fresh random kid; a court order's reference is sealed under the first named
// patron's profile key with that patron's kid (a reference can name the person: it goes
// with the account), or under the keystore's system key "system-seal" with kid "system"
// (SystemKID) when the entry names no patron. Package seal defines both envelopes and
// their associated data ("access patron" and "access note").
//
// The MAC is HMAC-SHA256 of this byte string, where str(x) is the length of x as 4 bytes
// big endian followed by the bytes of x, and nonce and ct are the raw bytes (not base64):
//
//	"lethe access entry v1" 0x00
//	str(id)
//	time: Unix seconds as 8 bytes big endian (two's complement), then nanoseconds as 4
//	str(staff) str(role) str(action) str(basis) str(scope) str(outcome) str(clause)
//	requests as 4 bytes (0 when absent)
//	number of patrons as 4 bytes, then for each: str(kid) str(nonce) str(ct)
//	0 or 1 as 4 bytes (is order_sealed present), then if 1: str(kid) str(nonce) str(ct)
//
// All integers are big endian. Every value is length-prefixed, so no two different
// entries have the same encoding.
//
// # Pseudonyms
//
// Only the projections can say whom a kid stands for, and only while the account is open
// (Index): a/<kid> holds the patron id, and r/<ref hash of the patron><kid> lets the
// projector find the account's rows without the id in any key. Record writes them, synced,
// under the projections' view lock and only for an account still open; the projector
// deletes all of an account's rows in the batch that applies its patron.closed, and the
// erasure sweep removes them from the files. From then on, and once the expunger has
// destroyed the profile key, the entry stays but lists the patron as Erased: nothing ties
// it to anyone. The index cannot be rebuilt from the CIRC stream (projections.Rebuild
// leaves it out of its comparison).
package access
