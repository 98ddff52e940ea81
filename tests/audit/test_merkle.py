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
