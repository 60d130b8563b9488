"""Networks and the glue that sizes any ``conf/model`` config to a cohort.

A model config is a Hydra ``_target_`` with keyword arguments. Its input-channel and class-count
arguments are left ``null`` in ``conf/model/*.yaml``; :func:`sized_model_config` fills them from the
slice mode, the cache's slice count and ``data.classes``, so one config serves every cohort. The
filled config is what the checkpoint stores, so evaluate rebuilds exactly the trained network.

An output head (``conf/head``, :mod:`pipeline.models.ordinal`) wraps the network: with a head,
:func:`network_config` sizes the network to the head's ``backbone_outputs`` and stores
``{head _target_, num_classes, backbone: <network>}``; without one (``head=softmax``) the network's
own K logits are the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import get_class

from pipeline.models.ordinal import CornHead, CumulativeLinkHead
from pipeline.models.simple_cnn import SimpleCNN

__all__ = [
    "IN_CHANNEL_KEYS",
    "NUM_CLASS_KEYS",
    "CornHead",
    "CumulativeLinkHead",
    "SimpleCNN",
    "input_channels",
    "network_config",
    "sized_model_config",
]

#: Argument names networks use for their input channels (MONAI's ResNet says n_input_channels).
IN_CHANNEL_KEYS = ("in_channels", "n_input_channels")
#: Argument names networks use for their number of outputs.
NUM_CLASS_KEYS = ("num_classes", "out_channels")


def input_channels(slice_mode: str, n_slices: int) -> int:
    """Network input channels: the S slices in ``channels`` mode, one in ``slices`` mode."""
    if slice_mode == "channels":
        return n_slices
    if slice_mode == "slices":
        return 1
    raise ValueError(f"data.slice_mode must be 'channels' or 'slices', got {slice_mode!r}")


def _fill(config: dict[str, Any], keys: tuple[str, ...], value: int, what: str) -> None:
    present = [k for k in keys if k in config]
    if not present:
        raise ValueError(
            f"model config {config.get('_target_')} has none of {list(keys)}; add the argument "
            f"that sets its {what} (null lets pipeline.train fill it)"
        )
    for key in present:
        if config[key] is None:
            config[key] = value
        elif int(config[key]) != value:
            raise ValueError(
                f"model.{key}={config[key]} but this cohort needs {value} ({what}); "
                f"leave model.{key} null to have it set automatically"
            )


def sized_model_config(
    model_cfg: Mapping[str, Any], in_channels: int, num_classes: int
) -> dict[str, Any]:
    """A plain copy of ``model_cfg`` with its input channels and class count filled in."""
    config = dict(model_cfg)
    if "_target_" not in config:
        raise ValueError("model config needs a _target_ (the network class or factory to build)")
    _fill(config, IN_CHANNEL_KEYS, in_channels, "input channels")
    _fill(config, NUM_CLASS_KEYS, num_classes, "number of classes")
    return config


def network_config(
    net_cfg: Mapping[str, Any],
    head_cfg: Mapping[str, Any] | None,
    in_channels: int,
    num_classes: int,
) -> dict[str, Any]:
    """The network to build and store: ``net_cfg`` sized, wrapped in ``head_cfg`` when it has a
    ``_target_`` (an empty or missing head keeps the network's own ``num_classes`` logits)."""
    if not head_cfg or "_target_" not in head_cfg:
        return sized_model_config(net_cfg, in_channels, num_classes)
    head = dict(head_cfg)
    outputs = get_class(str(head["_target_"])).backbone_outputs(num_classes)
    return {
        **head,
        "num_classes": num_classes,
        "backbone": sized_model_config(net_cfg, in_channels, outputs),
    }
