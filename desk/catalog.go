package desk

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// The bulk catalog route: many catalog_item commands in one request, so that a library's
// catalog imports at the speed of atomic batches rather than one round trip an item.

// CatalogItemsPath is the bulk catalog route: POST, administrators only, like the
// catalog_item command.
const CatalogItemsPath = "/api/desk/catalog-items"

// MaxBulkBodyBytes is the largest body of the bulk catalog route, and of no other route:
// ledger.MaxCatalogItems commands of the largest catalog row the schema allows (a
// 500-character title written as \u escapes, about 3.3 KB a command) fit in it. Such a
// body is read only after the session and the role are checked; one that says it is
// larger is refused before that, one that grows larger is refused when it passes this.
const MaxBulkBodyBytes = 4 << 20

// MaxBulkRequests is how many bulk catalog requests run at once; more are refused with
// unavailable (retry). It bounds what they hold in memory: their bodies, and the
// decisions and events of a thousand items each.
const MaxBulkRequests = 4

var (
	errBulkBusy = schemas.Errorf(schemas.CodeUnavailable, "%d bulk imports are running; retry", MaxBulkRequests)
)

// CatalogItemsRequest is the body of POST /api/desk/catalog-items: 1 to
// ledger.MaxCatalogItems catalog_item commands, each as the catalog-item route takes it,
// for distinct barcodes.
type CatalogItemsRequest struct {
	Commands []json.RawMessage `json:"commands"`
}

// CatalogItemsResult is the answer: what was done with each command, in order, and the
// counts of each outcome (ledger.CatalogNew and the others).
type CatalogItemsResult struct {
	New       int                     `json:"new"`
	Updated   int                     `json:"updated"`
	Unchanged int                     `json:"unchanged"`
	Repeated  int                     `json:"repeated"`
	Items     []ledger.CatalogOutcome `json:"items"`
}

// bulkSlots returns the semaphore of bulk requests, made on first use: a Server is built
// as a literal.
func (s *Server) bulkSlots() chan struct{} {
	s.bulkOnce.Do(func() { s.bulk = make(chan struct{}, MaxBulkRequests) })
	return s.bulk
}

// catalogItems runs a list of catalog_item commands (ledger.CatalogItems). Its body was
// left unread by limitBody, under this route's own limit: it is read here, after the
// session and the role were checked, and only while a slot is free.
func (s *Server) catalogItems(w http.ResponseWriter, r *http.Request) {
	slots := s.bulkSlots()
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		s.fail(w, r, errBulkBusy)
		return
	}
	raw, err := io.ReadAll(r.Body)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		s.fail(w, r, routeBodyTooLarge(MaxBulkBodyBytes))
		return
	}
	if err != nil {
		s.fail(w, r, errBodyUnread)
		return
	}
	var req CatalogItemsRequest
	if err := schemas.DecodeStrict(raw, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	raw = nil // the commands are copies: the body need not stay in memory while they run
	at := ledger.Station{Kind: "desk", Branch: cmp.Or(s.Branch, "main"), ID: "import"}
	items, err := s.Ledger.CatalogItems(r.Context(), at, req.Commands)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res := CatalogItemsResult{Items: items}
	for _, it := range items {
		switch it.Outcome {
		case ledger.CatalogNew:
			res.New++
		case ledger.CatalogUpdated:
			res.Updated++
		case ledger.CatalogUnchanged:
			res.Unchanged++
		case ledger.CatalogRepeated:
			res.Repeated++
		}
	}
	WriteJSON(w, http.StatusOK, res)
}
