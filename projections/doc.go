// Package projections is Lethe's read side: the projector that applies the CIRC stream to
// read models in Pebble, and the queries staff and the ledger run against them. The rows'
// shapes are package model's; package desk serves the reads over HTTP.
//
// Row layout (one Pebble database; JSON values):
//
//	m/applied               last stream sequence applied (8 bytes, big endian)
//	m/clock                 latest event time applied (unix ns): ages the x/ rows
//	m/name-key              keystore.NameKeyID of the key the n/ rows are hashed under
//	i/<barcode>             item: catalog record and status; never a patron
//	t/<H(txn id)>           open transaction: the patron–item link, deleted when it closes
//	p/<H(patron id)>        patron registry row; the profile stays sealed
//	c/<card hash>           card (the card number appears only as an HMAC)
//	f/<H(fine id)>          fine id -> transaction id, while the fine's transaction is open
//	q/<H(subject)>          last sequence applied per subject (optimistic concurrency)
//	o/<due><barcode>        overdue index of open loans
//	x/<H(command id)>       stream sequences a command appended (deduplication window)
//	y/<time><H(command id)> expiry index of x/ rows
//	e/<H(txn id)>           closed transaction waiting for its transaction.expunged record
//	k/<H(patron id)>        closed patron whose profile key the expunger must destroy
//	s/<day>/<branch>/<collection>/<measure>  aggregate count, no patron data
//	n/<name hash><H(patron id)>  open account under the keyed hash of its name
//	a/<kid>                 access-record pseudonym -> open account's id
//	r/<H(patron id)><kid>   the open account's pseudonyms (empty value), to delete them at close
//
// The a/ and r/ rows are the index of the access record's pseudonyms (package access). The
// access log writes them when it records an entry, not the projector, so Rebuild cannot
// derive them and leaves them out of its comparison; the projector deletes an account's
// rows in the batch that applies its patron.closed, and they are never written again.
//
// H is SHA-256. Ids never appear in keys, because Pebble keeps the key bytes of table
// bounds in its MANIFEST after the row is gone; links live only in values, and values of
// deleted or overwritten rows leave the files at the next erasure sweep (Store.Sweep), which
// compacts only around the rows deleted or overwritten since the sweep before. Every batch
// also writes m/applied, so after a crash the projector resumes at exactly the next event.
package projections
