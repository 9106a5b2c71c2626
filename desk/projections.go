package desk

import (
	"net/http"
	"strings"

	"github.com/imagineif/lethe/schemas"
)

// SkipRequest is the body of POST /api/projections/skip: an administrator's decision that
// the stopped projections pass over the event at Seq, and why.
type SkipRequest struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// SkipResult is the answer: the skip record's own sequence on the stream.
type SkipResult struct {
	Skipped uint64 `json:"skipped"`
	Record  uint64 `json:"record_seq"`
}

// skip records a skip of the event the projections are stopped at, and wakes them.
func (s *Server) skip(w http.ResponseWriter, r *http.Request) {
	var req SkipRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Seq == 0 || req.Reason == "" || len(req.Reason) > 500 {
		s.fail(w, r, schemas.Errorf(schemas.CodeInvalid, "give the sequence the projections stopped at (seq) and a reason of 1 to 500 characters"))
		return
	}
	rec, err := s.Ledger.Skip(r.Context(), req.Seq, req.Reason, requester(r).Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.logger().Warn("projections skip recorded", "seq", req.Seq, "record", rec, "staff", requester(r).Name)
	s.Reads.Store.Resume()
	WriteJSON(w, http.StatusOK, SkipResult{Skipped: req.Seq, Record: rec})
}
