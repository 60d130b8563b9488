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

__all__ = [
    "ArgmaxRule",
    "Decision",
    "DecisionRule",
    "TemperaturePriorRule",
    "crossfit_scores",
    "rule_from_dict",
]

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

    def fit(
        self, probs: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
    ) -> DecisionRule:
        """A copy fitted on validation probabilities ``(N, K)`` and true class indices ``(N,)``.

        ``groups`` ``(N,)`` says which model (fold) predicted each row, for rules that care.
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


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(labels, predicted))


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def _softmax(logits: np.ndarray) -> np.ndarray:
    from scipy.special import softmax

    return softmax(logits, axis=1)


@dataclass(frozen=True)
class TemperaturePriorRule(DecisionRule):
    """Temperature scaling for the reported probabilities, and a class-prior shift for the call.

    - ``temperature`` T (Guo et al. 2017): reported probabilities are ``softmax(log p / T)``, T
      fitted by the validation negative log-likelihood. Averaging folds and class weights leave
      probabilities over- or under-confident; one parameter fixes the scale without changing
      the ranking (AUC is unchanged).
    - ``log_bias`` b ``(K,)`` (b_0 = 0): the class is ``argmax(log p / T + b)``. b is fitted by
      the class-balanced validation log-likelihood (every class weighs the same in total), the
      smooth, convex stand-in for balanced accuracy: the decision the rule makes is the one an
      equal-prior cohort calls for. A middle stage that is never the most probable class (MCI
      between CN and AD) gets its share back. Fitting a threshold on balanced accuracy itself
      would choose noise on a few dozen validation subjects.

    The defaults (T = 1, b = 0) are the argmax rule; ``fit`` returns the fitted copy.
    """

    kind: ClassVar[str] = "temperature_prior"
    temperature: float = 1.0
    log_bias: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.log_bias is not None:
            object.__setattr__(self, "log_bias", tuple(float(b) for b in self.log_bias))

    def parameters(self) -> dict[str, Any]:
        bias = None if self.log_bias is None else [round(b, 6) for b in self.log_bias]
        return {"temperature": round(float(self.temperature), 6), "log_bias": bias}

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        return _softmax(_log_probs(probs) / self.temperature)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        scores = _log_probs(probs)
        if self.log_bias is not None:
            scores = scores + np.asarray(self.log_bias)[None, :]
        return scores.argmax(axis=1)

    def fit(
        self, probs: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
    ) -> TemperaturePriorRule:
        log_p = _log_probs(probs)
        labels = np.asarray(labels, dtype=np.int64)
        temperature = _fit_temperature(log_p, labels)
        bias = _fit_log_bias(log_p / temperature, labels)
        return TemperaturePriorRule(temperature=temperature, log_bias=tuple(bias.tolist()))


def _fit_temperature(log_p: np.ndarray, labels: np.ndarray) -> float:
    """T minimising the mean negative log-likelihood of ``softmax(log_p / T)`` (T in [0.05, 20])."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        z = log_p / np.exp(log_t)
        return float(np.mean(logsumexp(z, axis=1) - z[rows, labels]))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def _fit_log_bias(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """b ``(K,)`` minimising the class-balanced NLL of ``softmax(logits + b)``, with b = 0 for
    the first class present in ``labels`` (the reference) and for every absent class (nothing
    to fit it on)."""
    from scipy.optimize import minimize

    n, k = logits.shape
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    present = np.flatnonzero(counts > 0)
    free = present[1:]
    weights = (1.0 / counts[labels]) / len(present)
    onehot = np.eye(k)[labels]

    def full(values: np.ndarray) -> np.ndarray:
        bias = np.zeros(k)
        bias[free] = values
        return bias

    def loss_and_grad(values: np.ndarray) -> tuple[float, np.ndarray]:
        probs = _softmax(logits + full(values))
        loss = -np.sum(weights * np.log(np.clip(probs[np.arange(n), labels], 1e-300, None)))
        grad = ((probs - onehot) * weights[:, None]).sum(axis=0)
        return float(loss), grad[free]

    if len(free) == 0:
        return np.zeros(k)
    result = minimize(loss_and_grad, np.zeros(len(free)), jac=True, method="L-BFGS-B")
    return full(result.x)


def crossfit_scores(
    rule: DecisionRule,
    probs: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    n_splits: int = 5,
    fitted: DecisionRule | None = None,
) -> dict[str, float]:
    """Validation balanced accuracy of plain argmax, of ``rule`` fitted on all rows (optimistic:
    judged on its own fitting data) and of ``rule`` cross-fitted (each group's rows decided by
    the rule fitted on the other groups: what the rule should be expected to give on new data).

    ``groups``: the fold of each row (k-fold runs); without several groups the rows are split
    into ``n_splits`` stratified parts. ``fitted``: ``rule`` already fitted on all rows, for a
    caller that keeps it (fitted here when None).
    """
    from sklearn.model_selection import StratifiedKFold

    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    k = probs.shape[1]
    fitted = fitted if fitted is not None else rule.fit(probs, labels, groups)
    fitted_predicted = fitted.apply(probs).predicted
    if groups is None or len(np.unique(groups)) < 2:
        counts = np.bincount(labels, minlength=k)
        splits = min(n_splits, int(counts[counts > 0].min()))
        if splits < 2:
            groups = None
        else:
            folds = StratifiedKFold(splits, shuffle=True, random_state=0).split(probs, labels)
            groups = np.zeros(len(labels), dtype=np.int64)
            for i, (_, held) in enumerate(folds):
                groups[held] = i
    crossfit = np.full(len(labels), -1, dtype=np.int64)
    if groups is not None:
        for g in np.unique(groups):
            held = groups == g
            crossfit[held] = rule.fit(probs[~held], labels[~held]).apply(probs[held]).predicted
    return {
        "argmax": _balanced_accuracy(labels, probs.argmax(axis=1)),
        "fitted": _balanced_accuracy(labels, fitted_predicted),
        "crossfit": _balanced_accuracy(labels, crossfit) if groups is not None else float("nan"),
    }
