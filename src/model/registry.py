"""Embedding networks and margin heads, each registered under a name.

A model module registers a builder with :func:`register_model`; the ``model`` setting names
the one to build (``ecapa_tdnn`` by default). Train, eval, export and the benchmarks build
networks only through :func:`build_embedding_network`, so a new architecture is a new module
plus its registration, with no change to the code that trains, evaluates or exports it.
Margin heads work the same way with :func:`register_head` and the ``head`` setting.

The factory records which settings a builder read. Together with the parameter names and
shapes they describe the function the network computes (:func:`network_description`), which
is what the embedding cache is keyed on.

>>> @register_model("two_layer_tdnn", checkpoint_prefix="tdnn2")       # doctest: +SKIP
... def build(settings, impl):
...     return TwoLayerTDNN(settings.in_channels, settings.channels, settings.emb_size, impl)
"""
from dataclasses import dataclass

from src.config import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    """A registered embedding network.

    build(settings, impl) -> Cell mapping log-mel (N, T, in_channels) to embeddings (N, emb_size);
    check(settings) -> an error message (str) for settings this model cannot use, or None;
    checkpoint_prefix: training checkpoints are named ``<prefix>-<epoch>_<step>.ckpt``.
    """
    build: object
    check: object
    checkpoint_prefix: str


MODELS = {}
HEADS = {}


def register_model(name, checkpoint_prefix=None, check=None):
    """Decorator registering ``build(settings, impl)`` as model ``name``; returns the builder."""
    def decorate(build):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelEntry(build, check, checkpoint_prefix or name)
        return build
    return decorate


def register_head(name):
    """Decorator registering ``build(settings, class_num)`` as margin head ``name``.

    The head maps (embeddings (N, E), labels (N,)) to (logits (N, K), cosines (N, K)).
    """
    return registering(HEADS, name, "head")


def registering(table, name, what):
    """A decorator that puts the function it decorates into ``table[name]``, once; ``what``
    names the kind of entry for the error when ``name`` is taken."""
    def decorate(function):
        if name in table:
            raise ValueError(f"{what} {name!r} is registered twice")
        table[name] = function
        return function
    return decorate


def _lookup(table, setting, name):
    if name not in table:
        raise ConfigError(f"{setting}: {name!r} is not one of {', '.join(sorted(table))}")
    return table[name]


def model_entry(settings):
    """The :class:`ModelEntry` of ``settings.model``; ConfigError for an unknown name."""
    return _lookup(MODELS, "model", settings.model)


def check_model_settings(settings):
    """Raise ConfigError when the configured model cannot be built with these settings."""
    entry = model_entry(settings)
    problem = entry.check(settings) if entry.check is not None else None
    if problem:
        raise ConfigError(problem)


class _RecordingSettings:
    """Read-only view of a Config that remembers every setting read through it."""

    def __init__(self, settings):
        self._settings = settings
        self.read = {}

    def __getattr__(self, key):
        value = getattr(self._settings, key)
        self.read[key] = value
        return value


def build_embedding_network(settings, impl):
    """The configured embedding network, using convolution formulation ``impl``.

    The returned Cell carries ``model_settings``: the model name and every setting its
    builder read (for :func:`network_description`).
    """
    check_model_settings(settings)
    recorder = _RecordingSettings(settings)
    network = model_entry(settings).build(recorder, impl)
    network.model_settings = {"model": settings.model, **recorder.read}
    return network


def build_head(settings, class_num):
    """The configured margin head for ``class_num`` classes."""
    return _lookup(HEADS, "head", settings.head)(settings, class_num)


def network_description(network):
    """What determines a network's function apart from its weights, as a JSON-ready dict.

    ``model_settings`` (set by :func:`build_embedding_network`) and every parameter's name
    and shape, in a fixed order.
    """
    return {"settings": dict(getattr(network, "model_settings", {})),
            "parameters": sorted((parameter.name, list(parameter.shape))
                                 for parameter in network.get_parameters())}


def count_parameters(network):
    """Number of trainable scalars in ``network``."""
    total = 0
    for parameter in network.trainable_params():
        size = 1
        for dim in parameter.shape:
            size *= dim
        total += size
    return total
