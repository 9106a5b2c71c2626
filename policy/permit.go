package policy

// Action is something a staff account or a kiosk does that is not a record lookup.
type Action string

// The actions. They are wire names: append-only, never renamed or reused.
const (
	CheckOut          Action = "checkout"
	CheckIn           Action = "checkin"
	Renew             Action = "renew"
	ReportCardLost    Action = "report_card_lost"
	IssueCard         Action = "issue_card"
	RegisterPatron    Action = "register_patron"
	TakePayment       Action = "take_payment"
	WaiveFine         Action = "waive_fine"
	AssessFee         Action = "assess_fee"
	DeclareLost       Action = "declare_lost"
	MarkDamaged       Action = "mark_damaged"
	ClosePatron       Action = "close_patron"
	CatalogItem       Action = "catalog_item"
	ExportCollections Action = "export_collections"
	ReadAccessLog     Action = "read_access_log"
	ManageStaff       Action = "manage_staff"
	ReadStatistics    Action = "read_statistics"
	ReadItems         Action = "read_items"
	// ResolveProjections lets stopped projections pass over an event they cannot apply.
	ResolveProjections Action = "resolve_projections"
	// ReadErasure reads which transactions missed their erasure window: anonymous ids.
	ReadErasure Action = "read_erasure"
	// MakeBackup writes a backup of the whole library: every open record, sealed.
	MakeBackup Action = "make_backup"
	// SetPIN sets or changes the PIN a patron gives with the card at a self-check.
	SetPIN Action = "set_pin"
	// UpdateContact changes a patron's contact details: email, phone, address, and the
	// contact of a minor's caregiver.
	UpdateContact Action = "update_contact"
	// ManageCluster changes a cluster's membership: a node removed is left out of the next
	// key-encryption epoch.
	ManageCluster Action = "manage_cluster"
)

// Actions lists every action: a fresh slice each time, so no importer can add one.
func Actions() []Action {
	return []Action{
		CheckOut, CheckIn, Renew, ReportCardLost, IssueCard, RegisterPatron, TakePayment,
		WaiveFine, AssessFee, DeclareLost, MarkDamaged, ClosePatron, CatalogItem,
		ExportCollections, ReadAccessLog, ManageStaff, ReadStatistics, ReadItems, ResolveProjections,
		ReadErasure, MakeBackup, SetPIN, UpdateContact, ManageCluster,
	}
}

// Valid reports whether a is one of the actions.
func (a Action) Valid() bool {
	_, ok := actionRule(a)
	return ok
}

// rule is who may perform an action, under which clause, and how a refusal says it.
type rule struct {
	clause   Clause
	roles    []Role
	refusal  string // one sentence, no request values
	allowing string
}

// actionRule is the permission table. Administrators may do everything; circulation staff
// run the desk; auditors read anonymous data; kiosks lend and take back.
func actionRule(a Action) (rule, bool) {
	all := []Role{Circulation, Administrator}
	switch a {
	// "except as necessary for the library to function": lending, returning and renewing.
	case CheckOut, CheckIn, Renew:
		return rule{clauseFunction, []Role{Circulation, Administrator, Kiosk},
			"This role may not lend, return or renew items.", "Lending, returning and renewing are how the library functions."}, true
	// "Each customer has individual control over his or her library card": the PIN that
	// guards it at a self-check is set at the desk, on the patron's word.
	case SetPIN:
		return rule{clauseCard, all,
			"This role may not set a patron's PIN.", "A patron controls their card; desk staff set the PIN that guards it."}, true
	// A lost or stolen card is reported to staff, who stop it at once.
	case ReportCardLost:
		return rule{clauseLostCard, all,
			"A lost or stolen card is reported to desk staff.", "Desk staff stop a lost or stolen card at once."}, true
	case IssueCard, RegisterPatron, UpdateContact, TakePayment, AssessFee, DeclareLost, MarkDamaged:
		return rule{clauseFunction, all,
			"This role may not change patron accounts, items or fines.", "Desk work on accounts, items and fines is necessary for the library to function."}, true
	case WaiveFine, ClosePatron, CatalogItem, ResolveProjections:
		return rule{clauseFunction, []Role{Administrator},
			"Only an administrator may do this.", "Administrators manage fines, accounts and the catalog so the library can function."}, true
	// A backup is how the library keeps functioning through a lost disk; it holds every
	// open record, so it is an administrator's, and it is on the access record.
	case MakeBackup:
		return rule{clauseFunction, []Role{Administrator},
			"Only an administrator may make a backup.", "A backup keeps the library functioning through a lost disk, and expires with its key."}, true
	// A cluster's members hold every key-encryption key: who is one is an administrator's.
	case ManageCluster:
		return rule{clauseFunction, []Role{Administrator},
			"Only an administrator may change the cluster's members.", "Running the library on several machines keeps it functioning through a lost one."}, true
	// "or in the recovery of library materials and fines"
	case ExportCollections:
		return rule{clauseCollections, []Role{Administrator},
			"Only an administrator may export for the recovery of materials and fines.", "An administrator may export for the recovery of materials and fines."}, true
	// Disclosure in violation of the policy is an offense: the access record, and who may
	// disclose at all, are an administrator's.
	case ReadAccessLog, ManageStaff:
		return rule{clauseEmployees, []Role{Administrator},
			"Only an administrator may read the access record or manage staff.", "An administrator oversees who discloses records."}, true
	// Aggregate statistics carry no personally identifying information.
	case ReadStatistics:
		return rule{clauseStatistics, []Role{Circulation, Administrator, Auditor},
			"This role may not read statistics.", "Aggregate statistics contain no personally identifying information."}, true
	// Whether forgetting kept its window is what an auditor must be able to check: it
	// names transactions by their anonymous ids only.
	case ReadErasure:
		return rule{clauseStatistics, []Role{Administrator, Auditor},
			"Only administrators and auditors read the erasure report.", "The erasure report names no patron."}, true
	// Item status names no patron.
	case ReadItems:
		return rule{clauseFunction, []Role{Circulation, Administrator, Auditor},
			"This role may not read item status.", "Item status names no patron."}, true
	}
	return rule{}, false
}

// Permit decides whether role may perform action. The Scope is CurrentRecord when it may
// and Refused when it may not; the Clause and Reason say why.
func Permit(role Role, action Action) Decision {
	if !role.known() {
		return refuse(clauseConfidentiality, "The role is not one the policy knows.")
	}
	ru, ok := actionRule(action)
	if !ok {
		return refuse(clauseConfidentiality, "The action is not one the policy knows.")
	}
	for _, r := range ru.roles {
		if r == role {
			return Decision{CurrentRecord, ru.clause, ru.allowing}
		}
	}
	if role == Auditor {
		return refuse(clauseStatistics, "Auditors read anonymous data only.")
	}
	return refuse(ru.clause, ru.refusal)
}
