// Package keystore holds Lethe's transaction and profile keys, wrapped under
// a master key, and destroys them so that they are gone from every file.
//
// # Invariant
//
// After Destroy and a successful Sweep, no file under the store's directory
// contains the destroyed key, its wrapped value, its id, or its Pebble key.
// Ids never reach a file at all: the store keeps only a hash of them. After
// Rotate, no file contains a value wrapped under the old master key. This
// holds at the file level; freed disk blocks may keep old bytes, and that
// residue is bounded by master key rotation (wrapped keys are useless once
// their master key is destroyed). Forensic tests check the invariant by
// scanning every file of the directory (ScanDir), with negative controls
// that show default Pebble options keep deleted bytes.
//
// # Format
//
// The store is a Pebble database opened with PebbleOptions. Each key lives
// under the 34-byte Pebble key
//
//	'k' | kind | SHA-256(kind | 0x00 | id)
//
// where kind is one byte (1 transaction, 2 profile, 0xff the store's own
// system keys). The value is the key wrapped with XChaCha20-Poly1305 under
// the master key, 89 bytes in version 1:
//
//	offset  size  field
//	0       1     version (1)
//	1       8     master key ID: first 8 bytes of SHA-256(master key)
//	9       8     creation time, Unix milliseconds, big endian
//	17      24    random nonce
//	41      48    ciphertext of the 32-byte key, with the 16-byte tag
//
// The associated data is the 17 header bytes followed by the Pebble key, so
// a wrapped value cannot be moved to another key or have its header edited.
// (The id itself is not in the associated data because Rotate, which
// re-wraps every value, never knows ids; the hash binds the value to the id
// just as well.) The system keys have the ids "card-hash" (CardHash and
// NameHash), "access-mac" (AccessMAC) and "system-seal" (SealSystem); each is
// created by the first Open that finds it missing and is never destroyed.
//
// Open refuses a master key whose ID differs from the one recorded in the
// values (ErrWrongMaster). Rotate re-wraps all values in one atomic, synced
// batch, so the store is never under two master keys at once.
//
// # Erasure in Pebble
//
// A Pebble delete only writes a tombstone; the old value stays in tables and
// WAL files, and keys stay in the MANIFEST, until compaction, rotation and
// file deletion catch up. PebbleOptions, Erase and EraseKeys (which erases
// only named keys, and compacts only around them), exported for the other
// Pebble databases of Lethe, make that happen on demand; their doc comments
// say which Pebble behaviour each step defeats.
package keystore
