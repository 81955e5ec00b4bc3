"""SpeechBrain's and WeSpeaker's ECAPA-TDNN parameters, named and shaped as this project's.

A :class:`Library` describes one library's model: how each parameter of this project's
network is named in the library's state dict (:meth:`Library.their_name`), how its shape
differs there (Conv1d weights (O, I, k) for (O, I, 1, k) here, Linear weights (O, I) for the
(O, I, 1, 1) of a 1x1 TimeConv1d), which settings reproduce the library's function
(:meth:`Library.settings_of`, read from the weight shapes), and where the margin head's
weights are kept. Batch norms map gamma/beta/moving_mean/moving_variance to
weight/bias/running_mean/running_var; PyTorch's ``num_batches_tracked`` counter has no
counterpart and is written as 0.

- ``speechbrain``: speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN as in spkrec-ecapa-voxceleb
  (``embedding_model.ckpt``), its head the AAM classifier's ``weight`` (``classifier.ckpt``);
  this project's ``ecapa_tdnn`` with reflection padding, variance floor 1e-12, no last batch
  norm, SpeechBrain's front end. The dilations (2, 3, 4) are not in the weights and are taken
  as the published model's.
- ``wespeaker``: wespeaker.models.ecapa_tdnn.ECAPA_TDNN (``avg_model.pt``), its head
  ``projection.weight``; this project's ``wespeaker_ecapa_tdnn`` with Kaldi's front end.
"""
import re
from dataclasses import dataclass

import numpy as np

from src.errors import InputError

BATCH_NORM_LEAVES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                     "moving_variance": "running_var"}


class LibraryModelError(InputError):
    """A state dict that does not hold the library's ECAPA-TDNN as expected."""


def _leaf(name):
    return BATCH_NORM_LEAVES.get(name, name)


def _speechbrain_name(ours):
    """SpeechBrain's name of parameter ``ours``: every weight is a Conv1d's."""
    patterns = (
        (r"layer1\.(conv|norm)\.(\w+)", lambda m: f"blocks.0.{m[1]}.{m[1]}.{_leaf(m[2])}"),
        (r"layer(\d)\.(tdnn1|tdnn2)\.(conv|norm)\.(\w+)",
         lambda m: f"blocks.{int(m[1]) - 1}.{m[2]}.{m[3]}.{m[3]}.{_leaf(m[4])}"),
        (r"layer(\d)\.res2\.blocks\.(\d+)\.(conv|norm)\.(\w+)",
         lambda m: f"blocks.{int(m[1]) - 1}.res2net_block.blocks.{m[2]}.{m[3]}.{m[3]}.{_leaf(m[4])}"),
        (r"layer(\d)\.se\.(squeeze|excite)\.(\w+)",
         lambda m: f"blocks.{int(m[1]) - 1}.se_block.conv{1 if m[2] == 'squeeze' else 2}.conv.{m[3]}"),
        (r"mfa\.(conv|norm)\.(\w+)", lambda m: f"mfa.{m[1]}.{m[1]}.{_leaf(m[2])}"),
        (r"pooling\.attention\.(conv|norm)\.(\w+)", lambda m: f"asp.tdnn.{m[1]}.{m[1]}.{_leaf(m[2])}"),
        (r"pooling\.logits\.(\w+)", lambda m: f"asp.conv.conv.{m[1]}"),
        (r"pooling_norm\.(\w+)", lambda m: f"asp_bn.norm.{_leaf(m[1])}"),
        (r"fc\.(\w+)", lambda m: f"fc.conv.{m[1]}"),
    )
    return _rewrite(ours, patterns), "conv1d" if ours.endswith(".weight") else "vector"


def _wespeaker_name(ours):
    """WeSpeaker's name of parameter ``ours``: squeeze-excitation and the embedding layer are
    Linear layers, the other weights Conv1d's."""
    block = {"tdnn1": 0, "tdnn2": 2}
    norm = {"conv": "conv", "norm": "bn"}
    patterns = (
        (r"layer1\.(conv|norm)\.(\w+)", lambda m: f"layer1.{norm[m[1]]}.{_leaf(m[2])}"),
        (r"layer(\d)\.(tdnn1|tdnn2)\.(conv|norm)\.(\w+)",
         lambda m: f"layer{m[1]}.se_res2block.{block[m[2]]}.{norm[m[3]]}.{_leaf(m[4])}"),
        (r"layer(\d)\.res2\.blocks\.(\d+)\.(conv|norm)\.(\w+)",
         lambda m: f"layer{m[1]}.se_res2block.1.{norm[m[3]]}s.{m[2]}.{_leaf(m[4])}"),
        (r"layer(\d)\.se\.(squeeze|excite)\.(\w+)",
         lambda m: f"layer{m[1]}.se_res2block.3.linear{1 if m[2] == 'squeeze' else 2}.{m[3]}"),
        (r"mfa\.(\w+)", lambda m: f"conv.{m[1]}"),
        (r"pooling\.attention\.(\w+)", lambda m: f"pool.linear1.{m[1]}"),
        (r"pooling\.logits\.(\w+)", lambda m: f"pool.linear2.{m[1]}"),
        (r"pooling_norm\.(\w+)", lambda m: f"bn.{_leaf(m[1])}"),
        (r"fc\.(\w+)", lambda m: f"linear.{m[1]}"),
        (r"embedding_norm\.(\w+)", lambda m: f"bn2.{_leaf(m[1])}"),
    )
    if not ours.endswith(".weight"):
        kind = "vector"
    else:
        kind = "linear" if re.fullmatch(r"layer\d\.se\.\w+\.weight|fc\.weight", ours) else "conv1d"
    return _rewrite(ours, patterns), kind


def _rewrite(name, patterns):
    for pattern, rewrite in patterns:
        match = re.fullmatch(pattern, name)
        if match:
            return rewrite(match)
    raise ValueError(f"parameter {name!r} has no counterpart in the library's model")


def their_shape(our_shape, kind):
    """The library's shape of a parameter of shape ``our_shape`` and kind 'conv1d', 'linear' or 'vector'."""
    if kind == "conv1d":  # (O, I, 1, k) or a Dense's (O, I) -> (O, I, k)
        return (our_shape[0], our_shape[1], our_shape[3] if len(our_shape) == 4 else 1)
    if kind == "linear":  # (O, I, 1, 1) or (O, I) -> (O, I)
        return (our_shape[0], our_shape[1])
    return tuple(our_shape)


def _size(state, name, axis):
    if name not in state:
        raise LibraryModelError(f"lacks {name!r}")
    return int(np.shape(state[name])[axis])


def _count(state, pattern):
    return len([name for name in state if re.fullmatch(pattern, name)])


def _speechbrain_settings(state):
    first = "blocks.0.conv.conv.weight"
    return {"in_channels": _size(state, first, 1), "channels": _size(state, first, 0),
            "mfa_channels": _size(state, "mfa.conv.conv.weight", 0),
            "attention_channels": _size(state, "asp.tdnn.conv.conv.weight", 0),
            "se_channels": _size(state, "blocks.1.se_block.conv1.conv.weight", 0),
            "scale": _count(state, r"blocks\.1\.res2net_block\.blocks\.\d+\.conv\.conv\.weight") + 1,
            "emb_size": _size(state, "fc.conv.weight", 0)}


def _wespeaker_settings(state):
    mfa_channels = _size(state, "conv.weight", 0)
    return {"in_channels": _size(state, "layer1.conv.weight", 1), "channels": _size(state, "layer1.conv.weight", 0),
            "mfa_channels": mfa_channels, "attention_channels": _size(state, "pool.linear1.weight", 0),
            "se_channels": _size(state, "layer2.se_res2block.3.linear1.weight", 0),
            "scale": _count(state, r"layer2\.se_res2block\.1\.convs\.\d+\.weight") + 1,
            "emb_size": _size(state, "linear.weight", 0), "embedding_norm": "bn2.weight" in state,
            "global_context": _size(state, "pool.linear1.weight", 1) == 3 * mfa_channels}


@dataclass(frozen=True)
class Library:
    """One library's ECAPA-TDNN (module docstring).

    name: 'speechbrain' or 'wespeaker'; head: the state-dict name of the margin head's (K, E)
    weight; aam_scale: the logit scale it was trained with; fixed: the settings every model of
    the library has (the others are read from its weights).
    """
    name: str
    head: str
    aam_scale: float
    fixed: dict
    _names: object
    _settings: object

    def their_name(self, ours):
        """(name, kind) in the library of this project's parameter ``ours``; ValueError if it has none."""
        return self._names(ours)

    def settings_of(self, state):
        """The settings (dict) of this project's network computing the state dict's model, read
        from its weight shapes; LibraryModelError naming a missing parameter."""
        sizes = self._settings(state)
        return {"model": self.fixed["model"], "features": self.fixed["features"], **sizes,
                **{key: value for key, value in self.fixed.items() if key not in ("model", "features")}}

    def mismatches(self, settings):
        """The fixed settings that ``settings`` (a Config) has otherwise, as text."""
        return [f"{key} is {getattr(settings, key)!r}, {self.name}'s model has {value!r}"
                for key, value in self.fixed.items() if getattr(settings, key) != value]


LIBRARIES = {
    "speechbrain": Library("speechbrain", "weight", 30.0,
                           dict(model="ecapa_tdnn", features="speechbrain", padding="reflect", variance_floor=1e-12,
                                embedding_norm=False, global_context=True),
                           _speechbrain_name, _speechbrain_settings),
    "wespeaker": Library("wespeaker", "projection.weight", 32.0,
                         dict(model="wespeaker_ecapa_tdnn", features="kaldi", padding="zeros", variance_floor=1e-7),
                         _wespeaker_name, _wespeaker_settings),
}


def from_library(library, state, our_shapes):
    """This project's parameters {name: float32 array} from the library's ``state`` {name: array}.

    ``our_shapes``: {name: shape} of the network's parameters. Raises LibraryModelError naming
    a parameter that is missing, has another shape, or is left over in ``state`` (other than
    batch-norm counters and the head)."""
    ours, used = {}, set()
    for name, shape in our_shapes.items():
        theirs, kind = library.their_name(name)
        if theirs not in state:
            raise LibraryModelError(f"lacks {theirs!r} (this project's {name})")
        value = np.asarray(state[theirs])
        if value.shape != their_shape(shape, kind):
            raise LibraryModelError(f"{theirs!r} has shape {value.shape}, expected {their_shape(shape, kind)}")
        ours[name] = value.astype(np.float32).reshape(shape)
        used.add(theirs)
    left = sorted(name for name in state if name not in used and name != library.head
                  and not name.endswith("num_batches_tracked"))
    if left:
        raise LibraryModelError(f"holds {len(left)} parameters this model does not have, e.g. {left[0]!r}")
    return ours


def to_library(library, parameters):
    """The library's state dict {name: array} of this project's ``parameters`` {name: array}, with
    each batch norm's ``num_batches_tracked`` (int64 0)."""
    state = {}
    for name, value in parameters.items():
        theirs, kind = library.their_name(name)
        state[theirs] = np.asarray(value, np.float32).reshape(their_shape(np.shape(value), kind))
        if theirs.endswith(".running_var"):
            state[theirs[:-len("running_var")] + "num_batches_tracked"] = np.array(0, np.int64)
    return state
