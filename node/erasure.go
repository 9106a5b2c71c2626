package node

import (
	"context"

	"github.com/imagineif/lethe/expunger"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/schemas"
)

// resumeErasure hands the expunger the transactions whose keys were destroyed after its
// erasure watermark, read from the stream's transaction.expunged records: a restart then
// forgets no erasure, and a deadline that passed while the server was down is counted.
func resumeErasure(ctx context.Context, n *Node, exp *expunger.Expunger) error {
	seq, ok, err := exp.ErasedToSeq()
	if err != nil || !ok {
		return err
	}
	var items []expunger.Awaiting
	err = ledger.Read(ctx, n.JS, ledger.ReadOptions{From: seq + 1, Subjects: []string{ledger.ExpungedSubject}}, func(m ledger.Msg) error {
		_, data, err := n.V.EventData(m.Data)
		if d, ok := data.(schemas.TransactionExpunged); err == nil && ok {
			items = append(items, expunger.Awaiting{TxnID: d.TxnID, ClosedAt: d.ClosedAt, DestroyedAt: d.KeyDestroyedAt})
		}
		return nil
	})
	if err != nil {
		return err
	}
	exp.Resume(items)
	return nil
}
