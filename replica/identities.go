package replica

import (
	"errors"
	"log/slog"

	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/schemas"
)

// identities is the identity registry as a mirror's local copy: an entry per identity,
// keyed by its public key, merged by identity.Merge.
type identities struct {
	reg    *identity.Registry
	logger *slog.Logger
}

func (identities) key(id identity.Identity) string { return id.PublicKey }

func (identities) decode(key string, raw []byte) (identity.Identity, error) {
	var id identity.Identity
	if err := schemas.DecodeStrict(raw, &id); err != nil {
		return identity.Identity{}, err
	}
	if err := id.Validate(); err != nil {
		return identity.Identity{}, err
	}
	if id.PublicKey != key {
		return identity.Identity{}, errors.New("the entry's key is not its public key")
	}
	return id, nil
}

func (identities) merge(a, b identity.Identity) (identity.Identity, error) {
	return identity.Merge(a, b)
}

func (l identities) list() ([]identity.Identity, error) { return l.reg.List() }

func (l identities) apply(ids []identity.Identity) error {
	changed, err := l.reg.Merge(ids)
	if err == nil && changed {
		for _, id := range ids {
			l.logger.Info("identity from another node", slog.String("identity", id.Label()),
				slog.String("public_key", id.PublicKey), slog.Bool("active", id.Active()))
		}
	}
	return err
}

func (l identities) version() (string, error) { return l.reg.Version() }
