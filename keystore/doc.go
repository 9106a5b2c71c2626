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
// just as well.) The system keys have the ids "card-hash" (CardHash),
// "name-hash" (NameHash), "access-mac" (AccessMAC) and "system-seal"
// (SealSystem); each is created by the first Open that finds it missing and is
// never destroyed. Rotate re-wraps them and leaves them as they are: a new
// master key changes no hash, MAC or seal. The name key was split from the
// card key (stores made before have it from their next Open), so that no key
// that keys values on the stream also keys the name index, which the
// projections can build again (NameKeyID).
//
// Open refuses a master key whose ID differs from the one recorded in the
// values (ErrWrongMaster). Rotate re-wraps all values in one atomic, synced
// batch, so the store is never under two master keys at once.
//
// # Rotating the master key file
//
// RotateFile replaces the master key and its file in the steps below (Step),
// each on disk before the next begins. Beside the key file <file> it first
// writes a journal, <file>.rotation: the IDs of the old and the new key and,
// for a rotation to a file of its own, that file's path; never a key. The new
// key goes to <new>, which is <file>.next for a rotation in place, through
// <new>.tmp. A crash can stop it after any step; what is then on disk, and
// what the next OpenFile of <file> does about it:
//
//	after step    on disk                                        next OpenFile
//	(start)       <file>: old key; store under it                opens with it
//	journal       + journal                                      undo
//	new-key-temp  + <new>.tmp: new key                           undo
//	new-key       + <new>: new key (.tmp gone or a second link)  undo
//	rewrapped     store under the new key; old values in files   finish
//	erased        old values gone from the store's files         finish
//	old-zeroed    <file>: zeros                                  finish
//	old-removed   <file> gone                                    finish
//	installed     in place: <new> renamed to <file>              finish
//	done          journal gone                                   opens with <file>,
//	                                                             or with <new>
//
// OpenFile tells the two halves apart by the store, not by the files: the
// re-wrap is one synced batch, so exactly one of the two keys opens it. If the
// new key does, the rotation is finished as RotateFile would have: the store
// is swept (erasing the old values), the old key file destroyed whether it
// still holds the key or zeros, the new one renamed to <file> in place, the
// journal removed. If the old key does, the rotation is undone: the new key
// wrapped nothing and is destroyed, with its temporary file, and the journal
// removed. A temporary file that is a second link of its key file (a crash
// between link and unlink) loses only the link. OpenFile changes no file
// before the store is open, and so locked against other processes; it
// refuses to decide without the store (Pebble would make an empty one that
// the new key "opens"), and to destroy a key file whose ID the journal does
// not name. A <file>.next without a journal, which earlier versions could
// leave, is resolved the same way. So no key is ever lost, at most the old and
// the new key file exist at any moment, and once RotateFile or OpenFile
// returns, the key in use is the only one left and the old key opens nothing.
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
