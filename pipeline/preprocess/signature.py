"""The cheap half of "is the cohort up to date?": a signature of the input files, unparsed.

A rerun on unchanged inputs is the common case, and its answer should come at once (README,
"Benchmark figures"). Deciding it from the parsed inputs needs the labels table read by pandas
(its import is 0.25-0.5 s here), so :func:`~pipeline.preprocess.run.preprocess_cohort` first
compares a signature of the files themselves with the one the last run stored in its provenance:

- the names of every subject folder and stray file under ``data.root``;
- the fingerprints (relative paths, sizes, modification times) of the subjects the last run
  planned, which the stored signature lists;
- the labels table's bytes, and the recipe and options that decide the cache.

With the same labels bytes and the same folder names the plan is the same, so the same subjects
are fingerprinted: equal signatures mean equal inputs. Fingerprinting only the planned subjects
keeps the answer proportional to the cohort, not to a shared folder it is part of.

Example:
    >>> found = FoundSubjects.discover(root)                        # doctest: +SKIP
    >>> signature = SourceSignature.of(found, ["sub-01"], settings, labels_path)  # doctest: +SKIP
    >>> stored = {PROVENANCE_KEY: signature.as_json()}             # doctest: +SKIP
    >>> SourceSignature.matches(found, settings, labels_path, stored)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import config_hash
from pipeline.preprocess.discover import discover_subjects, folder_fingerprint
from pipeline.preprocess.rejection import Rejection

#: The provenance key the signature is stored under.
PROVENANCE_KEY = "source_signature"


@dataclass
class FoundSubjects:
    """The subjects under ``root`` and the stray files there; folder fingerprints on demand."""

    root: Path
    folders: dict[str, Path]  # subject id -> folder (or top-level NIfTI file)
    rejections: list[Rejection]  # top-level files outside any subject folder
    _fingerprints: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def discover(cls, root: Path) -> FoundSubjects:
        found, rejections = discover_subjects(root)
        return cls(root, dict(found), rejections)

    def fingerprint(self, subject_id: str) -> str:
        """:func:`~.discover.folder_fingerprint` of the subject's files (computed once)."""
        if subject_id not in self._fingerprints:
            self._fingerprints[subject_id] = folder_fingerprint(self.folders[subject_id], self.root)
        return self._fingerprints[subject_id]


@dataclass(frozen=True)
class SourceSignature:
    """A digest of the input files, and the subjects whose folders it fingerprints."""

    digest: str
    subjects: tuple[str, ...]  # sorted

    @classmethod
    def of(
        cls,
        found: FoundSubjects,
        subjects: Iterable[str],
        settings: Mapping[str, Any],
        labels_path: str | None,
    ) -> SourceSignature:
        """The signature of ``found``, fingerprinting ``subjects``; ``settings``: the recipe
        hash and options that decide the cache (JSON values)."""
        planned = tuple(sorted(subjects))
        digest = config_hash(
            {
                "settings": dict(settings),
                "folders": sorted(found.folders),
                "strays": sorted(json.dumps(r.as_row(), sort_keys=True) for r in found.rejections),
                "labels": _file_digest(labels_path) if labels_path else None,
                "fingerprints": [[sid, found.fingerprint(sid)] for sid in planned],
            }
        )
        return cls(digest, planned)

    def as_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "subjects": list(self.subjects)}

    @staticmethod
    def matches(
        found: FoundSubjects,
        settings: Mapping[str, Any],
        labels_path: str | None,
        provenance: Mapping[str, Any],
    ) -> bool:
        """True when ``provenance``'s stored signature is the signature of these files now."""
        stored = provenance.get(PROVENANCE_KEY)
        if not isinstance(stored, dict) or not isinstance(stored.get("subjects"), list):
            return False  # a cache made before signatures were stored
        subjects = [str(s) for s in stored["subjects"]]
        if not set(subjects) <= set(found.folders):
            return False  # a planned subject is gone: the inputs changed
        now = SourceSignature.of(found, subjects, settings, labels_path)
        return now.digest == stored.get("digest")


def _file_digest(path: str) -> str:
    """SHA-256 of a file's bytes, or ``missing`` (the labels reader then says what is wrong)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"
