"""pipeline.checkpoint: the Checkpoint / FoldEntry contract round-trips through a weights_only
file, and anything else (old format, missing keys, foreign files, unknown rules) is refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    FoldEntry,
    build_models,
    checkpoint_file,
    load_checkpoint,
    load_fold_entry,
    save_checkpoint,
    save_fold_entry,
)
from pipeline.decision import ArgmaxRule, DecisionRule, rule_from_dict

NETWORK = {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 1}


def _fold(seed: int, train=("a", "b"), val=("c",)) -> FoldEntry:
    torch.manual_seed(seed)
    return FoldEntry(
        state_dict=torch.nn.Conv2d(3, 2, 1).state_dict(),
        train_subjects=tuple(train),
        val_subjects=tuple(val),
        best_epoch=seed,
        epochs_trained=seed + 4,
        val_metrics={"val_bal_acc": 0.25 * seed},
    )


def _checkpoint(**changes) -> Checkpoint:
    base = Checkpoint(
        classes=("CN", "AD"),
        network=NETWORK,
        slice_mode="channels",
        recipe={"slices": {"count": 3}, "series": {}, "normalize": {"size": 8}},
        recipe_hash="abc123",
        folds=(_fold(1), _fold(2, train=("d",), val=("e", "a"))),
        train_config={"seed": 3},
        data_name="dev",
        versions={"torch": torch.__version__},
        created="2026-01-01T00:00:00+00:00",
        shuffle_labels=True,
    )
    return dataclasses.replace(base, **changes)


def _same(a: Checkpoint, b: Checkpoint) -> None:
    for name in ("classes", "network", "slice_mode", "recipe", "recipe_hash", "decision",
                 "train_config", "data_name", "versions", "created", "shuffle_labels"):  # fmt: skip
        assert getattr(a, name) == getattr(b, name), name
    assert len(a.folds) == len(b.folds)
    for fa, fb in zip(a.folds, b.folds, strict=True):
        assert fa.summary() == fb.summary()
        assert (fa.train_subjects, fa.val_subjects) == (fb.train_subjects, fb.val_subjects)
        assert fa.state_dict.keys() == fb.state_dict.keys()
        for key in fa.state_dict:
            assert torch.equal(fa.state_dict[key], fb.state_dict[key])


def test_round_trip_through_a_weights_only_file(tmp_path) -> None:
    ckpt = _checkpoint()
    path = save_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", ckpt)
    raw = torch.load(path, weights_only=True)  # plain types only: loads without pickled code
    assert raw["format_version"] == FORMAT_VERSION and raw["decision"] == {"kind": "argmax"}
    _same(load_checkpoint(path), ckpt)
    _same(load_checkpoint(tmp_path / "run"), ckpt)  # a run folder means its best.pt
    assert checkpoint_file(tmp_path / "run") == path


def test_subjects_seen_cover_every_fold() -> None:
    assert _checkpoint().subjects_seen() == {"a", "b", "c", "d", "e"}


def test_fold_entry_round_trip(tmp_path) -> None:
    entry = _fold(3)
    again = load_fold_entry(save_fold_entry(tmp_path / "fold_result.pt", entry))
    assert (
        again.summary()
        == entry.summary()
        == {
            "best_epoch": 3,
            "epochs_trained": 7,
            "val_metrics": {"val_bal_acc": 0.75},
            "n_train_subjects": 2,
            "n_val_subjects": 1,
        }
    )


def test_models_are_rebuilt_with_each_folds_weights() -> None:
    ckpt = _checkpoint()
    models = build_models(ckpt)
    assert len(models) == 2 and not models[0].training
    for model, fold in zip(models, ckpt.folds, strict=True):
        assert torch.equal(model.weight, fold.state_dict["weight"])
    assert not torch.equal(models[0].weight, models[1].weight)


def test_an_old_format_checkpoint_is_refused_with_what_to_do(tmp_path) -> None:
    path = tmp_path / "old.pt"
    old = {"format_version": 1, "classes": ["CN"], "model": NETWORK, "folds": [{}]}
    torch.save(old, path)
    with pytest.raises(CheckpointError, match=r"format 1; this code reads format 2.*train"):
        load_checkpoint(path)


@pytest.mark.parametrize("missing", ["recipe_hash", "decision", "folds"])
def test_missing_keys_are_named(tmp_path, missing: str) -> None:
    raw = _checkpoint().to_dict()
    del raw[missing]
    torch.save(raw, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=rf"lacks \['{missing}'\]"):
        load_checkpoint(tmp_path / "x.pt")


def test_foreign_and_missing_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="Cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a pipeline checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def test_an_unknown_decision_rule_is_refused(tmp_path) -> None:
    raw = _checkpoint().to_dict()
    raw["decision"] = {"kind": "crystal_ball"}
    torch.save(raw, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="unknown decision rule 'crystal_ball'"):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="at least one trained model"):
        _checkpoint(folds=())


def test_a_new_rule_is_a_new_class_and_round_trips(tmp_path) -> None:
    @dataclasses.dataclass(frozen=True)
    class PriorShift(DecisionRule):
        kind = "test_prior_shift"
        log_prior: tuple[float, ...] = (0.0, 0.0)

        def calibrate(self, probs: np.ndarray) -> np.ndarray:
            shifted = probs * np.exp(-np.asarray(self.log_prior))
            return shifted / shifted.sum(axis=1, keepdims=True)

        def decide(self, probs: np.ndarray) -> np.ndarray:
            return probs.argmax(axis=1)

    rule = PriorShift(log_prior=(1.0, 0.0))
    path = save_checkpoint(tmp_path / "best.pt", _checkpoint(decision=rule))
    loaded = load_checkpoint(path).decision
    assert loaded == rule and loaded.describe() == "test_prior_shift(log_prior=(1.0, 0.0))"
    decided = loaded.apply(np.array([[0.6, 0.4], [0.8, 0.2]]))
    assert decided.predicted.tolist() == [1, 0]  # the prior shift moves the first case
    np.testing.assert_allclose(decided.probabilities.sum(axis=1), 1.0)


def test_argmax_rule() -> None:
    rule = rule_from_dict({"kind": "argmax"})
    assert rule == ArgmaxRule() and rule.describe() == "argmax"
    probs = np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]])
    decided = rule.fit(probs, np.array([2, 0])).apply(probs)
    assert decided.predicted.tolist() == [1, 0]
    np.testing.assert_array_equal(decided.probabilities, probs)
    assert rule.apply(np.zeros((0, 3))).predicted.shape == (0,)
