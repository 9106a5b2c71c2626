package desk

import (
	"net/http"
	"time"

	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/policy"
	"github.com/imagineif/lethe/schemas"
)

// backupWriteTime bounds how long the answer of one backup may take to send.
const backupWriteTime = time.Hour

// backup is POST /api/backup: the backup file, streamed (application/octet-stream). A
// backup holds every open record, so it is on the access record before its first byte.
// A backup that fails before its first byte answers with a coded error; one that fails
// after is cut off, and the file it leaves fails to restore (it has no end).
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	by := requester(r)
	if s.Backup == nil {
		s.fail(w, r, schemas.Errorf(schemas.CodeUnavailable, "backups are not available on this server"))
		return
	}
	if err := s.Ledger.RecordAccess(r.Context(), ledger.Disclosure{By: by, Action: string(policy.MakeBackup),
		Scope: policy.BackupCopy, Clause: policy.ClauseFunction}); err != nil {
		s.fail(w, r, err)
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(backupWriteTime))
	started := false
	err := s.Backup(r.Context(), func(name string) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		w.WriteHeader(http.StatusOK)
		started = true
	}, w)
	switch {
	case err == nil:
	case !started:
		s.fail(w, r, schemas.Errorf(schemas.CodeUnavailable, "%v", err))
	default:
		s.logger().Error("backup failed while sending", "err", err)
		panic(http.ErrAbortHandler) // cut the connection: the client must not take a partial file for a whole one
	}
}
