// An independent checker of slotgen's checkpoints, for the tests only (tests/audit/test_signed_note.py).
//
// It uses Go's golang.org/x/mod/sumdb/note (C2SP signed notes) and golang.org/x/mod/sumdb/tlog (RFC 6962
// trees and proofs), as Debian's golang-golang-x-mod-dev ships them, and shares no code with slotgen.
// It reads one JSON request on stdin and writes one JSON answer on stdout:
//
//	notes:   {vkeys, msg}              -> note.Open with those verifier keys; the checkpoint text parsed
//	trees:   {old, oldRoot, new, newRoot, proof} -> tlog.CheckTree(proof, new, newRoot, old, oldRoot)
//	records: {index, leaf, size, root, proof}    -> tlog.CheckRecord(proof, size, root, index, leaf)
//	leaves:  [leaf hash, ...]          -> the root of every prefix (tlog.TreeHash) and every proof
//	                                      between prefixes (tlog.ProveTree, tlog.ProveRecord)
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type noteReq struct {
	Vkeys []string `json:"vkeys"`
	Msg   string   `json:"msg"`
}

type treeReq struct {
	Old     int64    `json:"old"`
	OldRoot string   `json:"oldRoot"`
	New     int64    `json:"new"`
	NewRoot string   `json:"newRoot"`
	Proof   []string `json:"proof"`
}

type recordReq struct {
	Index int64    `json:"index"`
	Leaf  string   `json:"leaf"`
	Size  int64    `json:"size"`
	Root  string   `json:"root"`
	Proof []string `json:"proof"`
}

type request struct {
	Notes   []noteReq   `json:"notes"`
	Trees   []treeReq   `json:"trees"`
	Records []recordReq `json:"records"`
	Leaves  []string    `json:"leaves"`
	Data    []string    `json:"data"`
}

type noteAns struct {
	OK         bool     `json:"ok"`
	Error      string   `json:"error"`
	Text       string   `json:"text"`
	Signers    []string `json:"signers"`
	Unverified []string `json:"unverified"`
	Origin     string   `json:"origin"`
	Size       int64    `json:"size"`
	Root       string   `json:"root"`
}

type checkAns struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

type answer struct {
	Notes        []noteAns           `json:"notes"`
	Trees        []checkAns          `json:"trees"`
	Records      []checkAns          `json:"records"`
	Roots        []string            `json:"roots"`        // roots[k]: the root of the first k leaves (k >= 1)
	TreeProofs   map[string][]string `json:"treeProofs"`   // "m,n": tlog.ProveTree(n, m)
	RecordProofs map[string][]string `json:"recordProofs"` // "i,n": tlog.ProveRecord(n, i)
	DataRoot     string              `json:"dataRoot"`     // the root of the records in data (tlog.RecordHash)
}

func hash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, errors.New("not a base64 SHA-256 hash")
	}
	copy(h[:], b)
	return h, nil
}

func hashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		h, err := hash(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// firstErr is the first of errs that is not nil (errors.Join needs Go 1.20; Debian 12 ships 1.19).
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func b64(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

// checkpointText parses a C2SP tlog-checkpoint note text: origin, decimal size, base64 root.
func checkpointText(text string, a *noteAns) error {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return errors.New("checkpoint text: fewer than three lines")
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	sizeText := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 || (sizeText != "0" && strings.HasPrefix(sizeText, "0")) {
		return errors.New("checkpoint text: malformed tree size")
	}
	root, err := hash(strings.TrimSuffix(lines[2], "\n"))
	if err != nil {
		return fmt.Errorf("checkpoint text: root: %v", err)
	}
	a.Origin, a.Size, a.Root = origin, size, b64(root)
	return nil
}

func openNote(r noteReq) noteAns {
	var a noteAns
	var verifiers []note.Verifier
	for _, vkey := range r.Vkeys {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			a.Error = fmt.Sprintf("verifier key %q: %v", vkey, err)
			return a
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open([]byte(r.Msg), note.VerifierList(verifiers...))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	a.Text = n.Text
	for _, s := range n.Sigs {
		a.Signers = append(a.Signers, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	for _, s := range n.UnverifiedSigs {
		a.Unverified = append(a.Unverified, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	if err := checkpointText(n.Text, &a); err != nil {
		a.Error = err.Error()
		return a
	}
	a.OK = true
	return a
}

func result(err error) checkAns {
	if err != nil {
		return checkAns{Error: err.Error()}
	}
	return checkAns{OK: true}
}

func run(req request) (answer, error) {
	ans := answer{Notes: []noteAns{}, Trees: []checkAns{}, Records: []checkAns{}, Roots: []string{},
		TreeProofs: map[string][]string{}, RecordProofs: map[string][]string{}}
	for _, r := range req.Notes {
		ans.Notes = append(ans.Notes, openNote(r))
	}
	for _, r := range req.Trees {
		old, err1 := hash(r.OldRoot)
		nw, err2 := hash(r.NewRoot)
		proof, err3 := hashes(r.Proof)
		if err := firstErr(err1, err2, err3); err != nil {
			ans.Trees = append(ans.Trees, result(err))
			continue
		}
		ans.Trees = append(ans.Trees, result(tlog.CheckTree(tlog.TreeProof(proof), r.New, nw, r.Old, old)))
	}
	for _, r := range req.Records {
		leaf, err1 := hash(r.Leaf)
		root, err2 := hash(r.Root)
		proof, err3 := hashes(r.Proof)
		if err := firstErr(err1, err2, err3); err != nil {
			ans.Records = append(ans.Records, result(err))
			continue
		}
		ans.Records = append(ans.Records, result(tlog.CheckRecord(tlog.RecordProof(proof), r.Size, root, r.Index, leaf)))
	}
	if len(req.Data) > 0 {
		var leaves []tlog.Hash
		for _, s := range req.Data {
			record, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return ans, err
			}
			leaves = append(leaves, tlog.RecordHash(record))
		}
		ans.DataRoot = b64(treeHash(leaves))
	}
	if len(req.Leaves) > 0 {
		leaves, err := hashes(req.Leaves)
		if err != nil {
			return ans, err
		}
		// tlog keeps a log as its "stored hashes"; build them record by record, as a tlog server does.
		var stored []tlog.Hash
		reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(indexes))
			for i, x := range indexes {
				if x < 0 || x >= int64(len(stored)) {
					return nil, fmt.Errorf("stored hash %d of %d", x, len(stored))
				}
				out[i] = stored[x]
			}
			return out, nil
		})
		for n, leaf := range leaves {
			more, err := tlog.StoredHashesForRecordHash(int64(n), leaf, reader)
			if err != nil {
				return ans, err
			}
			stored = append(stored, more...)
		}
		total := int64(len(leaves))
		for size := int64(1); size <= total; size++ {
			root, err := tlog.TreeHash(size, reader)
			if err != nil {
				return ans, err
			}
			ans.Roots = append(ans.Roots, b64(root))
			for old := int64(1); old <= size; old++ {
				p, err := tlog.ProveTree(size, old, reader)
				if err != nil {
					return ans, err
				}
				list := []string{}
				for _, h := range p {
					list = append(list, b64(h))
				}
				ans.TreeProofs[fmt.Sprintf("%d,%d", old, size)] = list
			}
			for i := int64(0); i < size; i++ {
				p, err := tlog.ProveRecord(size, i, reader)
				if err != nil {
					return ans, err
				}
				list := []string{}
				for _, h := range p {
					list = append(list, b64(h))
				}
				ans.RecordProofs[fmt.Sprintf("%d,%d", i, size)] = list
			}
		}
	}
	return ans, nil
}

// treeHash is MTH of RFC 6962 section 2.1 over leaf hashes, written out from the RFC (split at the largest
// power of two below n) so the data root does not come from tlog's stored-hash machinery either.
func treeHash(leaves []tlog.Hash) tlog.Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return tlog.NodeHash(treeHash(leaves[:k]), treeHash(leaves[k:]))
}

func main() {
	var req request
	dec := json.NewDecoder(os.Stdin)
	if err := dec.Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "go_witness: bad request:", err)
		os.Exit(2)
	}
	ans, err := run(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_witness:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(ans); err != nil {
		fmt.Fprintln(os.Stderr, "go_witness:", err)
		os.Exit(1)
	}
}
