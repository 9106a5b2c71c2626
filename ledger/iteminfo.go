package ledger

import (
	"time"

	"github.com/imagineif/lethe/model"
)

// ItemInfo is what a self-check machine may be told of an item: its catalog data, its
// status and, while it is on loan, when it is due. Never who holds it.
type ItemInfo struct {
	Barcode string
	Title   string
	Branch  string // the item's home branch
	Status  string // model.ItemAvailable, model.ItemOnLoan or model.ItemLost
	Due     time.Time
}

// ItemInfo reads an item's status from the projections. An unknown barcode is not_found;
// one that is no safe subject token is invalid. No patron is read, so nothing is disclosed
// and nothing goes on the access record.
func (l *Ledger) ItemInfo(barcode string) (ItemInfo, error) {
	var out ItemInfo
	err := l.withView(func(v view) error {
		it, _, err := v.item(barcode)
		if err != nil {
			return err
		}
		out = ItemInfo{Barcode: it.Barcode, Title: it.Title, Branch: it.Branch, Status: it.Status}
		if it.Status == model.ItemOnLoan {
			out.Due = it.Due
		}
		return nil
	})
	return out, err
}
