"""Name the sessions (visits) of one subject.

The rule, in order:

1. **Labels table ids.** When the labels table gives session ids for the subject, a series
   belongs to session ``s`` if every one of its files lies under a folder named exactly ``s``
   (at any depth below the subject folder). A series whose files sit under two such folders is
   rejected; a series under none falls through to rule 2 (and will then have no label).
2. **Studies.** The remaining series are grouped by study (DICOM StudyInstanceUID; a NIfTI
   file by its folder). One group is session ``""``. Several groups are named by the first
   folder level whose name is shared by all files of each group and differs between groups
   (``bl/``, ``m12/``, ``ses-01/``), unless such a name looks like a date (dates are identifying;
   ADNI folders are ``2011-03-02_10_12_44.0``).
3. **Ordinals.** Otherwise ``ses-1``, ``ses-2``… in order of study date and time (read from the
   headers only to order; a date is never written anywhere).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

_DATE_LIKE = re.compile(r"(19|20)\d\d[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])")


@dataclass(frozen=True)
class SessionUnit:
    """A series (or NIfTI file) to place in a session."""

    key: str  # series key, unique within the subject
    group: str  # study key: units of one study share it
    folders: tuple[tuple[str, ...], ...]  # per file: its folder names below the subject folder
    order: str  # sorts studies in time (a date/time string); never output


class SessionConflict(ValueError):
    """A series whose files lie under several labelled session folders."""


def _labelled_session(unit: SessionUnit, sessions: Collection[str]) -> str | None:
    found = set()
    for folders in unit.folders:
        match = next((name for name in folders if name in sessions), None)
        found.add(match)
    if found == {None}:
        return None
    if len(found) > 1:
        named = sorted(s for s in found if s is not None)
        raise SessionConflict(
            f"files lie under several session folders ({', '.join(named)}"
            f"{' and outside any' if None in found else ''}); keep one series per session folder"
        )
    return found.pop()


def _distinguishing_folder(groups: Mapping[str, list[SessionUnit]]) -> dict[str, str] | None:
    """Per group, the folder name at the first depth that tells the groups apart, if any."""
    depth = 0
    max_depth = max(len(f) for units in groups.values() for u in units for f in u.folders)
    while depth < max_depth:
        names: dict[str, str] = {}
        for group, units in groups.items():
            at_depth = {f[depth] if len(f) > depth else None for u in units for f in u.folders}
            if len(at_depth) != 1 or None in at_depth:
                break
            names[group] = at_depth.pop()  # type: ignore[assignment]
        else:
            if len(set(names.values())) == len(names):
                return names
        depth += 1
    return None


def assign_sessions(
    units: Sequence[SessionUnit], sessions: Collection[str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Session id per unit key, following the module's rule.

    Returns ``(assigned, conflicts)``: ``conflicts`` maps unit keys that cannot be placed to the
    reason (they get no session).
    """
    assigned: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    rest: list[SessionUnit] = []
    wanted = {str(s) for s in sessions or () if str(s)}
    for unit in units:
        if not wanted:
            rest.append(unit)
            continue
        try:
            session = _labelled_session(unit, wanted)
        except SessionConflict as err:
            conflicts[unit.key] = str(err)
            continue
        if session is None:
            rest.append(unit)
        else:
            assigned[unit.key] = session
    groups: dict[str, list[SessionUnit]] = {}
    for unit in rest:
        groups.setdefault(unit.group, []).append(unit)
    if len(groups) == 1:
        names = {next(iter(groups)): ""}
    elif groups:
        by_folder = _distinguishing_folder(groups)
        if by_folder is not None and not any(_DATE_LIKE.search(n) for n in by_folder.values()):
            names = by_folder
        else:
            order = sorted(groups, key=lambda g: (min(u.order for u in groups[g]), g))
            names = {g: f"ses-{i}" for i, g in enumerate(order, start=1)}
    else:
        names = {}
    for group, units_of_group in groups.items():
        for unit in units_of_group:
            assigned[unit.key] = names[group]
    return assigned, conflicts
