package schemas

// Reply schema names: the schemas under json/replies, one per reply shape. Wire names:
// append-only.
const (
	ReplyEnvelope     = "reply"           // Reply
	ReplyCheckOut     = "checkout_result" // CheckOutResult
	ReplyReturn       = "return_result"   // ReturnResult
	ReplyRenew        = "renew_result"    // RenewResult
	ReplyPatronRecord = "patron_record"   // PatronRecord
	ReplyRegistered   = "registered"      // Registered
	ReplyAccepted     = "accepted"        // Accepted
)

// Replies lists every reply schema name.
func Replies() []string {
	return []string{
		ReplyEnvelope, ReplyCheckOut, ReplyReturn, ReplyRenew, ReplyPatronRecord,
		ReplyRegistered, ReplyAccepted,
	}
}

// ResultOf returns the name of the reply schema of a command's Result, or "" for an
// unknown command.
func ResultOf(command string) string {
	switch command {
	case CmdCheckOut:
		return ReplyCheckOut
	case CmdReturn:
		return ReplyReturn
	case CmdRenew:
		return ReplyRenew
	case CmdPatronInfo:
		return ReplyPatronRecord
	case CmdRegisterPatron:
		return ReplyRegistered
	case CmdCatalogItem, CmdIssueCard, CmdReportCardLost, CmdDeclareLost, CmdMarkDamaged,
		CmdAssessFee, CmdPayFine, CmdWaiveFine, CmdClosePatron, CmdSetPIN, CmdUpdateContact:
		return ReplyAccepted
	}
	return ""
}
