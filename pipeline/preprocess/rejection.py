"""One row of ``rejected.csv``: an input that was not used, and why.

Its own module (standard library only), so that planning a cohort, which rejects subjects
before any image is read, needs none of the imaging libraries the readers import.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Levels of a rejection, from the smallest unit to the largest.
REJECTION_LEVELS = ("file", "series", "session", "subject")


@dataclass(frozen=True)
class Rejection:
    """One input not used, with a reason a person can act on ("43 slices, expected 44")."""

    subject_id: str
    session_id: str
    path: str  # file or folder, relative to data.root where possible
    level: str  # one of REJECTION_LEVELS
    reason: str

    def as_row(self) -> dict[str, str]:
        return {
            "subject_id": self.subject_id,
            "session_id": self.session_id,
            "path": self.path,
            "level": self.level,
            "reason": self.reason,
        }
