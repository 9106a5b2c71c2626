package tlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"
)

// rfc6962Root is RFC 6962's MTH, computed the slow way, from its definition.
func rfc6962Root(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		h := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return h[:]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	h := sha256.Sum256(append(append([]byte{1}, rfc6962Root(leaves[:k])...), rfc6962Root(leaves[k:])...))
	return h[:]
}

// TestTreeAgainstRFC6962 checks the tree against the test vectors of RFC 6962's reference
// implementation (the empty tree, and the roots of the first leaves of its test set) and
// against the definition of the tree hash, for every size up to 200 with random leaves.
func TestTreeAgainstRFC6962(t *testing.T) {
	// Leaves and roots from certificate-transparency's merkle_tree_test (also in
	// transparency-dev/merkle's testdata).
	leaves := []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	roots := []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	tree := NewTree()
	if root, _ := tree.Root(); hex.EncodeToString(root) != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty root = %x", root)
	}
	for i, l := range leaves {
		b, _ := hex.DecodeString(l)
		if err := tree.Append(b); err != nil {
			t.Fatal(err)
		}
		if root, _ := tree.Root(); hex.EncodeToString(root) != roots[i] {
			t.Errorf("root of %d leaves = %x, want %s", i+1, root, roots[i])
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var all [][]byte
	tree = NewTree()
	for n := 1; n <= 200; n++ {
		leaf := make([]byte, rng.IntN(40))
		for i := range leaf {
			leaf[i] = byte(rng.Uint32())
		}
		all = append(all, leaf)
		tree.Append(leaf)
		if root, _ := tree.Root(); !bytes.Equal(root, rfc6962Root(all)) {
			t.Fatalf("size %d: root differs from the definition", n)
		}
	}
}

// TestSignOpen: a checkpoint opens with its key, not with another, and not edited.
func TestSignOpen(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	s, err := NewSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	root := bytes.Repeat([]byte{9}, 32)
	signed, err := s.Sign(42, root)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := Open(signed, s.VerifierKey())
	if err != nil || cp.Size != 42 || !bytes.Equal(cp.Root, root) {
		t.Fatalf("Open = %+v, %v", cp, err)
	}
	other, _ := NewSigner(bytes.Repeat([]byte{8}, 32))
	if _, err := Open(signed, other.VerifierKey()); !errors.Is(err, ErrSignature) {
		t.Errorf("another key: %v, want ErrSignature", err)
	}
	edited := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := Open(edited, s.VerifierKey()); !errors.Is(err, ErrSignature) {
		t.Errorf("an edited size: %v, want ErrSignature", err)
	}
	if !bytes.HasPrefix(signed, []byte(Origin+"\n42\n")) {
		t.Errorf("the note does not start with the origin and size:\n%s", signed)
	}
}

// TestInclusionProofs: for every leaf of every tree size up to 70, the proof verifies
// against the tree's root, and fails for another leaf, another index or another root
// (a property test against the brute-force root of the definition).
func TestInclusionProofs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var leaves, hashes [][]byte
	for n := 1; n <= 70; n++ {
		leaf := []byte{byte(n), byte(rng.Uint32())}
		leaves, hashes = append(leaves, leaf), append(hashes, LeafHash(leaf))
		root := rfc6962Root(leaves)
		for i := range n {
			p, err := InclusionProof(hashes, uint64(i), uint64(n))
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(leaves[i], uint64(i), uint64(n), p, root); err != nil {
				t.Fatalf("size %d, leaf %d: %v", n, i, err)
			}
			if VerifyInclusion(append([]byte{9}, leaves[i]...), uint64(i), uint64(n), p, root) == nil {
				t.Fatalf("size %d, leaf %d: another leaf verifies", n, i)
			}
			if n > 1 && VerifyInclusion(leaves[i], uint64((i+1)%n), uint64(n), p, root) == nil {
				t.Fatalf("size %d, leaf %d: another index verifies", n, i)
			}
		}
	}
}

// BenchmarkTreeAppend is the checkpointer's cost per event: one leaf of an event's size.
//
//	go test ./tlog -run '^$' -bench TreeAppend
func BenchmarkTreeAppend(b *testing.B) {
	leaf := bytes.Repeat([]byte("x"), 600)
	tree := NewTree()
	b.SetBytes(int64(len(leaf)))
	for b.Loop() {
		if err := tree.Append(leaf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRotation: a rotation note opens with the old key and names the new; not with the
// new key or another.
func TestRotation(t *testing.T) {
	old, _ := NewSigner(bytes.Repeat([]byte{1}, 32))
	next, _ := NewSigner(bytes.Repeat([]byte{2}, 32))
	signed, err := old.SignRotation(next.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenRotation(signed, old.VerifierKey()); err != nil || got != next.VerifierKey() {
		t.Fatalf("OpenRotation = %q, %v", got, err)
	}
	if _, err := OpenRotation(signed, next.VerifierKey()); !errors.Is(err, ErrSignature) {
		t.Errorf("opened with the new key: %v", err)
	}
	cp, _ := old.Sign(1, bytes.Repeat([]byte{3}, 32))
	if _, err := OpenRotation(cp, old.VerifierKey()); err == nil {
		t.Error("a checkpoint taken for a rotation")
	}
}

// TestTreeFrom: a tree continued from another's compact range has the same roots.
func TestTreeFrom(t *testing.T) {
	a := NewTree()
	for i := range 37 {
		a.Append([]byte{byte(i)})
	}
	b, err := TreeFrom(a.Size(), a.Hashes())
	if err != nil {
		t.Fatal(err)
	}
	for i := 37; i < 80; i++ {
		a.Append([]byte{byte(i)})
		b.Append([]byte{byte(i)})
		ra, _ := a.Root()
		rb, _ := b.Root()
		if !bytes.Equal(ra, rb) {
			t.Fatalf("size %d: roots differ", i+1)
		}
	}
	if _, err := TreeFrom(5, a.Hashes()[:1]); err == nil {
		t.Error("a prefix with the wrong hashes was accepted")
	}
}
