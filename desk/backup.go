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
// backup holds every open record, so it is on the access record before its first byte; a
// backup that fails before that is recorded as refused. One that fails after it is cut
// off, and the file it leaves fails to restore (it has no end).
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	by := requester(r)
	record := func(scope policy.Scope) error {
		return s.Ledger.RecordAccess(r.Context(), ledger.Disclosure{By: by, Action: string(policy.MakeBackup),
			Scope: scope, Clause: policy.ClauseFunction})
	}
	if s.Backup == nil {
		if err := record(policy.Refused); err != nil {
			s.fail(w, r, err)
			return
		}
		s.fail(w, r, schemas.Errorf(schemas.CodeUnavailable, "backups are not available on this server"))
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(backupWriteTime))
	started := false
	err := s.Backup(r.Context(), func(name string) error {
		if err := record(policy.BackupCopy); err != nil {
			return err
		}
		started = true
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		w.WriteHeader(http.StatusOK)
		return nil
	}, w)
	switch {
	case err == nil:
	case !started:
		if rerr := record(policy.Refused); rerr != nil {
			err = rerr
		} else if schemas.CodeOf(err) == schemas.CodeInternal {
			err = schemas.Errorf(schemas.CodeUnavailable, "%v", err)
		}
		s.fail(w, r, err)
	default:
		s.logger().Error("backup failed while sending", "err", err)
		panic(http.ErrAbortHandler) // cut the connection: the client must not take a partial file for a whole one
	}
}
