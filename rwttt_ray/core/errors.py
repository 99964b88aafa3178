"""Named contract errors: every rejected step, commit or group has its own type.

All derive from `ContractError`, so a caller can catch the whole contract at once. The ledger
raises them when a version or owner check fails; the planner and workers raise
`IllegalGroupError` from `assert_legal`. An error always means nothing was changed.
"""
from __future__ import annotations


class ContractError(Exception):
    """A step, commit or group that would break the RW-TTT owner/version contract."""


class StaleVersionError(ContractError):
    """A step or commit expected a version other than the owner's committed one."""

    def __init__(self, owner_id: str, expected: int, committed: int) -> None:
        super().__init__(f"owner {owner_id}: expected version {expected}, committed version is {committed}")
        self.owner_id = owner_id
        self.expected = expected
        self.committed = committed

    def __reduce__(self) -> tuple[type, tuple[str, int, int]]:   # keeps the fields when pickled across processes (Ray)
        return (type(self), (self.owner_id, self.expected, self.committed))


class DuplicateOwnerError(ContractError):
    """An owner registered twice, pending twice in the planner, or twice in one group."""


class UnknownOwnerError(ContractError, KeyError):
    """An owner the ledger does not hold (also a KeyError, for mapping-style callers)."""

    def __str__(self) -> str:   # KeyError would repr() the message, quotes included
        return str(self.args[0]) if self.args else "unknown owner"


class DuplicateCommitError(ContractError):
    """A commit with no pending WRITE, or a replay of a candidate already committed."""


class WriteInProgressError(ContractError):
    """A second WRITE begun while the owner's candidate is still pending."""


class IllegalGroupError(ContractError):
    """A group that is empty, mixes keys, repeats an owner, or expects a stale version."""
