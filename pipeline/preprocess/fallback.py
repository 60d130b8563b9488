"""A session whose chosen series fails at decoding falls back to its next qualifying series.

The header scan chooses one series per session (:func:`.series_select.choose`) and lists every
other qualifying series as "not used" in the rejections. Pixels are decoded only later, so the
chosen series can still fail (a corrupt compressed frame, a file that changed). Rather than
give the session up, :class:`Fallbacks` hands out the next qualifying series in the order of
preference, and keeps the rejection rows true: the series now used loses its "not used" row,
and the ones still waiting name it as the series used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.preprocess.series_select import Candidate, not_chosen_reason
from pipeline.preprocess.stack import Rejection, SliceStack


@dataclass(frozen=True)
class Alternative:
    """A qualifying series not chosen, and its "not used" row while it stays unused."""

    candidate: Candidate
    row: Rejection


@dataclass
class Fallbacks:
    """The qualifying series each session did not choose, in the order of preference."""

    prefer: str  # series.prefer, for the rows' wording
    waiting: dict[str, list[Alternative]] = field(default_factory=dict)  # by session id
    locations: dict[tuple[str, str], str] = field(default_factory=dict)  # (session, series hash)

    def add(self, candidate: Candidate, location: str, row: Rejection | None = None) -> None:
        """Record where a qualifying series lives; with its "not used" ``row``, keep it waiting.

        ``candidate.stack`` carries its subject and session ids.
        """
        stack = candidate.stack
        self.locations[stack.session_id, stack.series_hash] = location
        if row is not None:
            self.waiting.setdefault(stack.session_id, []).append(Alternative(candidate, row))

    def location(self, stack: SliceStack) -> str:
        """Where ``stack``'s series lives, relative to ``data.root`` ("" if not recorded)."""
        return self.locations.get((stack.session_id, stack.series_hash), "")

    def next_stack(self, session_id: str, rejections: list[Rejection]) -> SliceStack | None:
        """The session's next qualifying series, its rows in ``rejections`` updated; or None."""
        queue = self.waiting.get(session_id) or []
        if not queue:
            return None
        used = queue.pop(0)
        if used.row in rejections:
            rejections.remove(used.row)
        reason = not_chosen_reason(used.candidate, self.prefer)
        for k, waiting in enumerate(queue):
            row = dataclasses.replace(waiting.row, reason=reason)
            if waiting.row in rejections:
                rejections[rejections.index(waiting.row)] = row
            queue[k] = Alternative(waiting.candidate, row)
        return used.candidate.stack
