"""The node's error tree; each class carries its CONTRACT.md code and HTTP status.

    RaftnetError
    ├── NotLeaderError        307 not_leader    not applied here; names the leader
    ├── UnavailableError      503 unavailable   definitely NOT applied
    ├── IndeterminateError    504 timeout       may or may not be applied
    ├── BadRequestError       400 bad_request
    ├── ForbiddenError        403 forbidden
    ├── NotFoundError         404 not_found
    ├── CasFailedError        409 cas_failed
    ├── TooLargeError         413 too_large
    ├── StaleIncarnationError 409 stale_incarnation  peer batch from a wiped member's new data dir
    └── MemberExistsError     409 member_exists      re-adding a member that exists with another incarnation

When unsure whether a write may still commit, raise IndeterminateError:
503 is a promise that it never will.
"""

from __future__ import annotations

from typing import Any


class RaftnetError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class NotLeaderError(RaftnetError):
    code, status = "not_leader", 307

    def __init__(self, leader_id: str, address: str) -> None:
        super().__init__(f"not the leader; the leader is {leader_id} at {address}",
                         leader={"id": leader_id, "address": address})
        self.leader_id = leader_id
        self.address = address


class UnavailableError(RaftnetError):
    code, status = "unavailable", 503


class IndeterminateError(RaftnetError):
    code, status = "timeout", 504


class BadRequestError(RaftnetError):
    code, status = "bad_request", 400


class ForbiddenError(RaftnetError):
    code, status = "forbidden", 403


class NotFoundError(RaftnetError):
    code, status = "not_found", 404


class CasFailedError(RaftnetError):
    code, status = "cas_failed", 409


class TooLargeError(RaftnetError):
    code, status = "too_large", 413


class StaleIncarnationError(RaftnetError):
    """A peer batch from another incarnation of a known member (its data dir was wiped)."""

    code, status = "stale_incarnation", 409


class MemberExistsError(RaftnetError):
    """POST /v1/members for a member that exists with another incarnation."""

    code, status = "member_exists", 409
