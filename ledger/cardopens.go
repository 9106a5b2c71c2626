package ledger

// CardOpens reports whether a presented card opens an open account: nil, or the coded
// error every kiosk command presenting it gets (ErrUnknownCard, ErrCardLost, a closed
// account). It reads no record and discloses nothing of the account: a self-check asks it
// before it asks for the patron's PIN.
func (l *Ledger) CardOpens(card string) error {
	return l.withView(func(v view) error {
		_, err := v.cardPatron(card)
		return err
	})
}
