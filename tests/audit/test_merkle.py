"""The RFC 6962 Merkle tree against the published test vectors, then as properties.

Vectors: the eight reference leaves and their roots used by Certificate
Transparency and the transparency-dev Merkle libraries, with their
inclusion and consistency proofs.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from slotgen_ops.audit.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_of_stream,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
H = {name: bytes.fromhex(h) for name, h in {
    "96a2": "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f08": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47": "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    "bc1a": "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca85": "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37e": "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "0ebc": "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
}.items()}
HASHES = [leaf_hash(leaf) for leaf in LEAVES]

INCLUSION = [(0, 8, ["96a2", "5f08", "6b47"]), (5, 8, ["bc1a", "ca85", "d37e"])]
CONSISTENCY = [(1, 1, []), (1, 8, ["96a2", "5f08", "6b47"]), (6, 8, ["0ebc", "ca85", "d37e"]),
               (2, 5, ["5f08", "bc1a"]), (2, 8, ["5f08", "6b47"])]


def test_roots_match_the_published_vectors():
    assert EMPTY_ROOT == ROOTS[0]
    for size in range(len(LEAVES) + 1):
        assert root(HASHES[:size]) == ROOTS[size], size
        assert root_of_stream(iter(HASHES[:size])) == ROOTS[size], size


def test_inclusion_proofs_match_the_published_vectors():
    for index, size, names in INCLUSION:
        proof = [H[n] for n in names]
        assert inclusion_proof(HASHES[:size], index) == proof
        assert verify_inclusion(HASHES[index], index, size, proof, ROOTS[size])


def test_consistency_proofs_match_the_published_vectors():
    for old, new, names in CONSISTENCY:
        proof = [H[n] for n in names]
        assert consistency_proof(HASHES[:new], old) == proof, (old, new)
        assert verify_consistency(old, new, ROOTS[old], ROOTS[new], proof), (old, new)


def test_the_split_is_rfc_6962s_not_the_midpoint():
    # Size 3 splits 2 + 1: a midpoint split would give another root.
    a, b, c = HASHES[:3]
    assert root([a, b, c]) == node_hash(node_hash(a, b), c) != node_hash(a, node_hash(b, c))


TREES = st.lists(st.binary(max_size=8), min_size=1, max_size=40).map(lambda leaves: [leaf_hash(x) for x in leaves])


@settings(max_examples=60, deadline=None)
@given(tree=TREES, data=st.data())
def test_every_proof_verifies_and_every_tampering_fails(tree, data):
    n = len(tree)
    full = root(tree)
    i = data.draw(st.integers(0, n - 1))
    path = inclusion_proof(tree, i)
    assert verify_inclusion(tree[i], i, n, path, full)
    assert not verify_inclusion(leaf_hash(b"other"), i, n, path, full)
    if n > 1:
        assert not verify_inclusion(tree[i], (i + 1) % n, n, path, full) or tree[i] == tree[(i + 1) % n]
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(tree, m)
    old = root(tree[:m])
    assert verify_consistency(m, n, old, full, proof)
    if m < n:
        # A rewritten old entry (even with every later hash recomputed) is caught.
        forged = list(tree)
        forged[data.draw(st.integers(0, m - 1))] = leaf_hash(b"rewritten")
        assert not verify_consistency(m, n, old, root(forged), consistency_proof(forged, m))
        assert not verify_consistency(m, n, old, full, proof[:-1])
        if proof:
            bad = list(proof)
            bad[0] = leaf_hash(b"x")
            assert not verify_consistency(m, n, old, full, bad)


# A proof for sizes (m, n) and the root of n, shown with a claimed new size larger than n: the walk of
# the proof ends with bits of the claimed size left over, and that must refuse it (RFC 9162 2.1.4.2 step
# 9, 2.1.3.2 step 6: "sn is 0"). Without that check each of these was accepted: a log could say it holds
# more entries than the root commits to. (tests/audit/test_signed_note.py checks every such claim
# against Go's tlog.CheckTree and tlog.CheckRecord as well.)
LARGER_CLAIMS = [(1, 1, 2), (2, 2, 3), (1, 2, 4), (2, 3, 5), (3, 7, 13), (6, 8, 20), (5, 11, 40)]


def test_a_consistency_proof_does_not_stretch_to_a_larger_claimed_size():
    tree = [leaf_hash(bytes([i])) for i in range(40)]
    for old, real, claimed in LARGER_CLAIMS:
        proof = consistency_proof(tree[:real], old)
        old_root, new_root = root(tree[:old]), root(tree[:real])
        assert verify_consistency(old, real, old_root, new_root, proof), (old, real)
        assert not verify_consistency(old, claimed, old_root, new_root, proof), (old, real, claimed)


def test_an_inclusion_proof_does_not_stretch_to_a_larger_claimed_size():
    tree = [leaf_hash(bytes([i])) for i in range(40)]
    for index, real, claimed in [(0, 1, 2), (1, 2, 3), (0, 2, 5), (4, 7, 13), (7, 8, 20), (10, 11, 40)]:
        proof = inclusion_proof(tree[:real], index)
        assert verify_inclusion(tree[index], index, real, proof, root(tree[:real])), (index, real)
        assert not verify_inclusion(tree[index], index, claimed, proof, root(tree[:real])), (index, real, claimed)


def test_a_proof_for_a_larger_tree_does_not_pass_for_smaller_claimed_sizes():
    """The other "sn is 0" check, inside the walk: once the claimed tree's height is used up, a hash left in
    the proof refuses it. Without it a proof of a larger tree passes for smaller sizes with the same roots:
    leaf 1 of a tree of 2 as leaf 0 of a tree of 1, the step 7 -> 8 as the step 3 -> 4."""
    tree = [leaf_hash(bytes([i])) for i in range(40)]
    for index, real, claimed_index, claimed in [(1, 2, 0, 1), (3, 4, 1, 2), (4, 6, 0, 2), (10, 12, 2, 4)]:
        proof = inclusion_proof(tree[:real], index)
        assert verify_inclusion(tree[index], index, real, proof, root(tree[:real]))
        assert not verify_inclusion(tree[index], claimed_index, claimed, proof, root(tree[:real])), (index, real)
    for old, real, claimed_old, claimed in [(7, 8, 3, 4), (7, 8, 6, 8), (11, 12, 5, 6)]:
        proof = consistency_proof(tree[:real], old)
        old_root, new_root = root(tree[:old]), root(tree[:real])
        assert verify_consistency(old, real, old_root, new_root, proof)
        assert not verify_consistency(claimed_old, claimed, old_root, new_root, proof), (old, real)
