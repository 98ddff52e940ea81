"""A gate's test: one Python expression, parsed once, checked, and rewritten for each compiled path.

A test reads `controls` (Controls), `allowlist` (Allowlist or
AllowlistUnavailable) and at most two things of the job: `job`, the job
itself (checked against the job schema first), and `job_bucket`, its bucket.
It binds no names. This module owns that grammar: `GateTest.parse` refuses a
test that breaks it and records which of the job's inputs it reads, and
`GateTest.source` gives the test back as source with those inputs replaced by
the expressions each compiled path reads them with (`decision.Engine`).
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

# What a gate's test may name: the two inputs every gate has, and the job's two.
CONTEXT = ("controls", "allowlist")
JOB = "job"
BUCKET = "job_bucket"


class _Inputs(ast.NodeTransformer):
    """Replaces names in a test (`job`, `job_bucket`) with the expressions that read them."""

    def __init__(self, read: dict[str, str]) -> None:
        self._read = read

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id not in self._read:
            return node
        return ast.copy_location(ast.parse(self._read[node.id], mode="eval").body, node)


@dataclass(frozen=True)
class GateTest:
    """A gate's test, parsed once and checked: which inputs it reads, and its source in any setting."""

    tree: ast.Expression
    reads_job: bool
    reads_bucket: bool

    @classmethod
    def parse(cls, name: str, test: str) -> GateTest:
        """The test `test` of the gate `name`; ValueError, naming the gate, when it breaks the grammar."""
        try:
            tree = ast.parse(test, mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"gate {name!r}: its test is not an expression ({exc.msg})") from None
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, (ast.NamedExpr, ast.Lambda, ast.comprehension)):
                raise ValueError(f"gate {name!r}: a test reads its inputs, it binds no names")
        allowed = (*CONTEXT, JOB, BUCKET)
        unknown = names.difference(allowed)
        if unknown:
            raise ValueError(f"gate {name!r}: its test names {', '.join(sorted(unknown))}; "
                             f"a test may read only {', '.join(allowed)}")
        return cls(tree, JOB in names, BUCKET in names)

    def source(self, read: dict[str, str]) -> str:
        """The test as source, each name in `read` replaced by the expression that reads it."""
        tree = _Inputs(read).visit(copy.deepcopy(self.tree))
        return ast.unparse(ast.fix_missing_locations(tree))
