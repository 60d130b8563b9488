"""Decision rules: how a model's class probabilities become the probabilities and class reported.

A trained checkpoint carries one :class:`DecisionRule` (:attr:`pipeline.checkpoint.Checkpoint.
decision`); evaluate and predict apply it in one place (:mod:`pipeline.apply`), after the fold
ensemble. A rule does two things, in this order:

1. :meth:`DecisionRule.calibrate` maps the ensemble's probabilities ``(N, K)`` to the
   probabilities that are reported (``prob_<class>`` columns, ROC curves, calibration);
2. :meth:`DecisionRule.decide` picks one class index per row from those.

A rule is fitted once, on validation predictions, by :meth:`DecisionRule.fit` (training calls it
with the validation subjects' probabilities and labels) and stored as a plain dict
(:meth:`DecisionRule.to_dict`, ``{"kind": ..., <parameters>}``) so the checkpoint still loads with
``torch.load(weights_only=True)``. A new rule is a new subclass with its own ``kind``: it is found
by :func:`rule_from_dict` without any change to the apply or train flow.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = ["ArgmaxRule", "Decision", "DecisionRule", "rule_from_dict"]

#: kind -> rule class; filled by ``DecisionRule.__init_subclass__``.
_RULES: dict[str, type[DecisionRule]] = {}


@dataclass(frozen=True)
class Decision:
    """A rule applied to ``N`` cases: reported probabilities ``(N, K)``, class index ``(N,)``."""

    probabilities: np.ndarray
    predicted: np.ndarray


class DecisionRule(ABC):
    """From class probabilities ``(N, K)`` to reported probabilities and a class per case.

    Subclasses are frozen dataclasses whose fields are the rule's fitted parameters (plain
    numbers and lists) and that set ``kind``, the name stored in the checkpoint.
    """

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is not None:
            if kind in _RULES and _RULES[kind] is not cls:
                raise TypeError(f"decision rule kind {kind!r} is already {_RULES[kind].__name__}")
            _RULES[kind] = cls

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """The probabilities to report for ``probs`` ``(N, K)`` (the identity unless overridden)."""
        return probs

    @abstractmethod
    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The class index ``(N,)`` chosen for each row of calibrated probabilities ``(N, K)``."""

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> DecisionRule:
        """A copy fitted on validation probabilities ``(N, K)`` and true class indices ``(N,)``.

        Rules without parameters return themselves.
        """
        return self

    def describe(self) -> str:
        """One line for people (the report and the logs say which rule was used)."""
        params = ", ".join(f"{k}={v}" for k, v in self.parameters().items())
        return f"{self.kind}({params})" if params else self.kind

    def parameters(self) -> dict[str, Any]:
        """The fitted parameters, as plain Python values."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def apply(self, probs: np.ndarray) -> Decision:
        """Calibrate, then decide (the one order every caller uses)."""
        probs = np.asarray(probs, dtype=np.float64)
        calibrated = np.asarray(self.calibrate(probs), dtype=np.float64)
        if len(calibrated) == 0:
            return Decision(calibrated, np.zeros(0, dtype=np.int64))
        return Decision(calibrated, np.asarray(self.decide(calibrated), dtype=np.int64))

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., **parameters}``: what the checkpoint stores."""
        return {"kind": self.kind, **self.parameters()}


def rule_from_dict(data: dict[str, Any]) -> DecisionRule:
    """The rule :meth:`DecisionRule.to_dict` wrote (``ValueError`` for an unknown kind)."""
    params = dict(data)
    kind = params.pop("kind", None)
    if kind not in _RULES:
        raise ValueError(f"unknown decision rule {kind!r}; this code knows {sorted(_RULES)}")
    return _RULES[kind](**params)


@dataclass(frozen=True)
class ArgmaxRule(DecisionRule):
    """The most probable class, probabilities reported as the models give them.

    The Bayes decision for 0-1 loss when the probabilities are calibrated and the deployment
    cohort has the training cohort's class mix.
    """

    kind: ClassVar[str] = "argmax"

    def decide(self, probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs).argmax(axis=1)
