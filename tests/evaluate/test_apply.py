"""pipeline.apply: evaluate and predict apply the checkpoint's own decision rule, in one place."""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.apply import apply_checkpoint
from pipeline.cache import read_table
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.decision import DecisionRule, TemperaturePriorRule
from pipeline.evaluate.run import evaluate
from pipeline.predict import predict


@dataclasses.dataclass(frozen=True)
class AlwaysLast(DecisionRule):
    """Test rule: sharpen the probabilities (temperature 1/2), then always pick the last class."""

    kind = "test_always_last"
    temperature: float = 0.5

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        sharp = probs ** (1.0 / self.temperature)
        return sharp / sharp.sum(axis=1, keepdims=True)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        return np.full(len(probs), probs.shape[1] - 1)


def _with_rule(path, rule: DecisionRule):
    ckpt = load_checkpoint(path)
    return save_checkpoint(path, dataclasses.replace(ckpt, decision=rule))


def test_apply_runs_the_ensemble_through_the_stored_rule(tmp_path, fakes, evaluate_cfg) -> None:
    subjects, labels = fakes.cohort_ids()
    fakes.write_cache(tmp_path / "cache" / "held", subjects, labels)
    plain = fakes.write_checkpoint(tmp_path / "plain.pt", fakes.conv_net(), n_folds=2)
    ruled = _with_rule(fakes.write_checkpoint(tmp_path / "r.pt", fakes.conv_net(), n_folds=2),
                       AlwaysLast())  # fmt: skip
    base = apply_checkpoint(evaluate_cfg("data.name=held", f"checkpoint={plain}"), print)
    applied = apply_checkpoint(evaluate_cfg("data.name=held", f"checkpoint={ruled}"), print)
    mean = np.mean(base.fold_probabilities, axis=0)
    np.testing.assert_allclose(base.decision.probabilities, mean)
    assert base.table["predicted"].tolist() == [fakes.CLASSES[i] for i in mean.argmax(axis=1)]
    np.testing.assert_allclose(
        applied.decision.probabilities, AlwaysLast().calibrate(mean), rtol=1e-6
    )
    assert set(applied.table["predicted"]) == {"AD"}
    assert applied.table["prob_AD"].tolist() == applied.decision.probabilities[:, 2].tolist()
    assert not applied.table["seen_in_training"].any()


def test_evaluate_and_predict_use_the_rules_decisions(
    tmp_path, fakes, evaluate_cfg, predict_cfg
) -> None:
    subjects, labels = fakes.cohort_ids((4, 3, 3))
    fakes.write_cache(tmp_path / "cache" / "held", subjects, labels)
    ckpt = _with_rule(fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net()), AlwaysLast())
    said: list[str] = []
    result = evaluate(
        evaluate_cfg("data.name=held", f"checkpoint={ckpt}", "evaluate.explain.enabled=false"),
        tmp_path / "report",
        log=said.append,
    )
    metrics = result.metrics
    assert metrics["confusion_matrix"] == [[0, 0, 4], [0, 0, 3], [0, 0, 3]]
    assert metrics["per_class"]["AD"]["sensitivity"] == 1.0
    assert metrics["model"]["decision_rule"] == "test_always_last(temperature=0.5)"
    assert any("Decision rule: test_always_last" in line for line in said)
    assert "test_always_last(temperature=0.5)" in (tmp_path / "report" / "report.html").read_text()

    table = predict(predict_cfg("data.name=held", f"checkpoint={ckpt}", "data.root=unused"),
                    tmp_path / "predict", log=lambda _: None)  # fmt: skip
    assert set(table["predicted"]) == {"AD"}
    evaluated = read_table(tmp_path / "report" / "predictions.csv")
    np.testing.assert_allclose(table["prob_MCI"], evaluated["prob_MCI"])


def test_a_stored_temperature_prior_rule_is_applied(
    tmp_path, fakes, evaluate_cfg, predict_cfg
) -> None:
    """The default rule training stores: evaluate and predict report softmax(log p / T) and
    call argmax(log p / T + b), exactly as the rule object does."""
    subjects, labels = fakes.cohort_ids((4, 3, 3))
    fakes.write_cache(tmp_path / "cache" / "held", subjects, labels)
    plain = fakes.write_checkpoint(tmp_path / "plain.pt", fakes.conv_net(), n_folds=2)
    rule = TemperaturePriorRule(temperature=2.0, log_bias=(0.0, 5.0, 0.0))
    ruled = _with_rule(fakes.write_checkpoint(tmp_path / "r.pt", fakes.conv_net(), n_folds=2),
                       rule)  # fmt: skip
    assert load_checkpoint(ruled).decision == rule  # survives weights_only loading
    mean = np.mean(apply_checkpoint(evaluate_cfg("data.name=held", f"checkpoint={plain}"),
                                    print).fold_probabilities, axis=0)  # fmt: skip
    result = evaluate(
        evaluate_cfg("data.name=held", f"checkpoint={ruled}", "evaluate.explain.enabled=false"),
        tmp_path / "report",
        log=lambda _: None,
    )
    evaluated = read_table(tmp_path / "report" / "predictions.csv")
    expected = rule.apply(mean)
    reported = evaluated[["prob_CN", "prob_MCI", "prob_AD"]].to_numpy()
    np.testing.assert_allclose(reported, expected.probabilities, atol=1e-6)
    assert evaluated["predicted"].tolist() == [fakes.CLASSES[i] for i in expected.predicted]
    assert set(evaluated["predicted"]) == {"MCI"}  # a log-bias of 5 outweighs these models
    assert result.metrics["model"]["decision_rule"].startswith("temperature_prior(temperature=2.0")
    table = predict(predict_cfg("data.name=held", f"checkpoint={ruled}", "data.root=unused"),
                    tmp_path / "predict", log=lambda _: None)  # fmt: skip
    assert table["predicted"].tolist() == evaluated["predicted"].tolist()
