"""Named contract errors: every rejection of a stale, duplicate or illegal step has its own type."""
from __future__ import annotations


class ContractError(Exception):
    """A step or commit that would break the RW-TTT owner/version contract."""


class StaleVersionError(ContractError):
    def __init__(self, owner_id: str, expected: int, committed: int) -> None:
        super().__init__(f"owner {owner_id}: expected version {expected}, committed is {committed}")
        self.owner_id, self.expected, self.committed = owner_id, expected, committed


class DuplicateOwnerError(ContractError):
    """An owner registered twice, or twice in one group / one pending queue."""


class UnknownOwnerError(ContractError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown owner"


class DuplicateCommitError(ContractError):
    """A commit with no pending WRITE, or of a candidate that is not the pending one."""


class WriteInProgressError(ContractError):
    """A second WRITE begun while the owner's candidate is still pending."""


class IllegalGroupError(ContractError):
    """A group whose members differ in key, repeat an owner, or expect a stale version."""
