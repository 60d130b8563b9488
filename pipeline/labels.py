"""The labels table: which subject (and session) has which diagnosis, plus optional covariates.

A CSV or TSV file (the delimiter is sniffed) with the columns

- ``subject_id`` (required): the subject folder name under ``data.root``;
- ``label`` (required): one of ``data.classes`` (default ``CN``, ``MCI``, ``AD``);
- ``session_id`` (optional): one row per session when subjects have repeat visits; a row with an
  empty ``session_id`` applies to every session of its subject;
- ``age``, ``sex``, ``site`` (optional covariates, copied into the manifest).

Every value is read as text, so ``007`` stays ``007``. Errors name the file and the line (line 1
is the header) and collect every problem found, so one fix-and-rerun cycle is enough.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by read_labels: see pipeline.cache on why not here
    import pandas as pd

REQUIRED_COLUMNS = ("subject_id", "label")
OPTIONAL_COLUMNS = ("session_id", "age", "sex", "site")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

#: At most this many problems are listed in one error message.
_MAX_LISTED = 20


class LabelsError(ValueError):
    """The labels table cannot be used; the message names the file, the line and the fix."""


def _delimiter(path: Path, sample: str) -> str:
    """Tab for ``.tsv``/``.tab``; else sniffed among comma, tab and semicolon (default comma)."""
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    try:
        return csv.Sniffer().sniff(sample.splitlines()[0] if sample else "", ",\t;").delimiter
    except csv.Error:
        return ","


def read_labels(path: str | Path, classes: Sequence[str]) -> pd.DataFrame:
    """Read and validate a labels table.

    Returns a DataFrame with exactly the columns :data:`COLUMNS` (missing optional ones filled
    with ``""``), all strings, whitespace stripped, plus ``line`` (the row's line number in the
    file, for later messages). Raises :class:`LabelsError` listing every problem: a missing
    column, an empty ``subject_id``, a label outside ``classes``, a duplicated subject (or
    subject + session), a non-numeric age.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise LabelsError(f"Labels table {p} does not exist (data.labels).")
    with open(p, encoding="utf-8-sig", newline="") as fh:
        sample = fh.read(64 * 1024)
    try:
        frame = pd.read_csv(
            p,
            sep=_delimiter(p, sample),
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            skipinitialspace=True,
            skip_blank_lines=False,  # keep them until the rows are numbered, so lines are right
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LabelsError(f"Labels table {p} is not a readable CSV/TSV file: {exc}") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise LabelsError(
            f"Labels table {p} lacks column(s) {missing}; it has {list(frame.columns)}. "
            f"Required: {list(REQUIRED_COLUMNS)}; optional: {list(OPTIONAL_COLUMNS)}."
        )
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame[list(COLUMNS)].fillna("").apply(lambda col: col.str.strip())
    frame.insert(len(COLUMNS), "line", range(2, len(frame) + 2))
    frame = frame[(frame[list(COLUMNS)] != "").any(axis=1)]  # blank lines carry nothing

    problems = _row_problems(frame, classes)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = (
            f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        )
        raise LabelsError(f"Labels table {p} has {len(problems)} problem(s):\n  {listed}{more}")
    return frame.reset_index(drop=True)


def _row_problems(frame: pd.DataFrame, classes: Sequence[str]) -> list[str]:
    """Every problem in the table, one message per offending line, in file order."""
    allowed = [str(c) for c in classes]
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for row in frame.itertuples(index=False):
        where = f"line {row.line}"
        if not row.subject_id:
            problems.append((row.line, f"{where}: empty subject_id"))
            continue
        if row.label not in allowed:
            hint = ""
            close = [c for c in allowed if c.lower() == row.label.lower()]
            if close:
                hint = f" (did you mean {close[0]!r}? labels are case-sensitive)"
            problems.append(
                (
                    row.line,
                    f"{where}: subject {row.subject_id!r} has label {row.label!r}, which is not "
                    f"one of the classes {allowed} (data.classes){hint}",
                )
            )
        if row.age:
            try:
                float(row.age)
            except ValueError:
                problems.append((row.line, f"{where}: age {row.age!r} is not a number"))
        key = (row.subject_id, row.session_id)
        if key in seen:
            what = f"subject {row.subject_id!r}" + (
                f" session {row.session_id!r}" if row.session_id else ""
            )
            problems.append((row.line, f"{where}: duplicate {what} (first on line {seen[key]})"))
        else:
            seen[key] = row.line
    problems.extend(_mixed_session_problems(frame))
    return [message for _, message in sorted(problems, key=lambda item: item[0])]


def _mixed_session_problems(frame: pd.DataFrame) -> list[tuple[int, str]]:
    """A subject with both a subject-wide row (no session) and per-session rows is ambiguous."""
    named = frame[frame["subject_id"] != ""]
    blank = named["session_id"] == ""
    by_subject = named["subject_id"]
    mixed = blank.groupby(by_subject).any() & (~blank).groupby(by_subject).any()
    problems = []
    for subject_id in mixed[mixed].index:  # a whole-table pass: per-subject groups cost 100x
        line = int(named.loc[blank & (by_subject == subject_id), "line"].iloc[0])
        problems.append(
            (
                line,
                f"line {line}: subject {subject_id!r} has a row without session_id and rows "
                "with one; give every row of this subject a session_id, or keep one row",
            )
        )
    return problems


def sessions_by_subject(labels: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Each subject's labelled session ids (an empty tuple: one row covers all its sessions)."""
    named = labels[labels["session_id"] != ""]
    sessions = {  # one pass over the rows that name a session: a group per subject costs 10x
        str(subject_id): tuple(sorted(ids))
        for subject_id, ids in named.groupby("subject_id")["session_id"]
    }
    return {str(s): sessions.get(str(s), ()) for s in sorted(set(labels["subject_id"]))}


def row_index(labels: pd.DataFrame) -> dict[tuple[str, str], dict[str, str]]:
    """Rows keyed by ``(subject_id, session_id)``; pass to :func:`lookup`."""
    return {
        (row["subject_id"], row["session_id"]): row
        for row in labels[list(COLUMNS)].to_dict(orient="records")
    }


def lookup(
    index: dict[tuple[str, str], dict[str, str]], subject_id: str, session_id: str
) -> dict[str, str] | None:
    """The row labelling this subject/session: the exact session row, else the subject-wide row."""
    return index.get((subject_id, session_id)) or index.get((subject_id, ""))
