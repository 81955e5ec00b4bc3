"""Checkpoints of SpeechBrain's and WeSpeaker's ECAPA-TDNN taken in, and this project's given back.

:func:`import_model` reads a library's files (src/interop/torch_file.py), derives the settings
of the network that computes the same function (src/interop/library_models.py) and writes a
checkpoint as averaging writes them (``embedding_network.*`` and, with the library's classifier,
``head.weight``), which eval.py, export.py and ``init_from`` take, with those settings as YAML
beside it. :func:`export_model` writes a checkpoint of this project back as the library's files:

- speechbrain: a folder with ``embedding_model.ckpt`` (and ``classifier.ckpt`` with a head),
  loadable by speechbrain.lobes.models.ECAPA_TDNN's ECAPA_TDNN and Classifier with strict=True;
- wespeaker: a folder with ``avg_model.pt``, loadable by wespeaker.models.ecapa_tdnn's model
  class with strict=True; ``with_head`` adds ``projection.weight`` as WeSpeaker's training
  checkpoints hold it (its own loader takes either).
"""
import contextlib
import os

import numpy as np
import yaml
from mindspore import Tensor

from src.checkpoint import EMBEDDING_PREFIX, load_embedding_weights, read_checkpoint, save_checkpoint
from src.config import ConfigError, config_of
from src.errors import InputError
from src.fileio import OutputError, atomic_write, check_writable_file, make_folder
from src.interop.library_models import LIBRARIES, LibraryModelError, from_library, to_library
from src.interop.torch_file import read_torch_file, write_torch_archive
from src.model import build_embedding_network

HEAD_WEIGHT = "head.weight"
# The files of each library's model folder: (embedding model, separate head file or None).
LIBRARY_FILES = {"speechbrain": ("embedding_model.ckpt", "classifier.ckpt"), "wespeaker": ("avg_model.pt", None)}


def library(name):
    """The Library called ``name``; InputError for another name."""
    if name not in LIBRARIES:
        raise InputError(f"library {name!r} is not one of {', '.join(sorted(LIBRARIES))}")
    return LIBRARIES[name]


def model_files(name, source):
    """(model file, head file or None) of library ``name``'s model at ``source``: its folder, or the
    model file itself (SpeechBrain's classifier.ckpt is then looked for beside it)."""
    model_name, head_name = LIBRARY_FILES[name]
    model = os.path.join(source, model_name) if os.path.isdir(source) else source
    if not os.path.isfile(model):
        raise InputError(f"{model}: not found (expected {name}'s {model_name}, or its folder)")
    head = os.path.join(os.path.dirname(model), head_name) if head_name else None
    return model, head if head and os.path.isfile(head) else None


def network_of(settings):
    """A network built from ``settings`` (a Config), for its parameter names and shapes."""
    return build_embedding_network(settings, "shifted")


def _head_of(name, state, head_path, emb_size):
    """The (K, E) head weight of the library's files, or None."""
    entry = LIBRARIES[name].head
    source = state_dict_of(read_torch_file(head_path), head_path) if head_path else state
    where = head_path or "the model file"
    if head_path and set(source) != {entry}:
        raise InputError(f"{head_path}: expected only {entry!r} (SpeechBrain's Classifier without dense "
                         f"blocks), found {', '.join(sorted(source))}")
    if entry not in source:
        return None
    head = np.asarray(source[entry], np.float32)
    if head.ndim != 2 or head.shape[1] != emb_size:
        raise InputError(f"{where}: {entry!r} has shape {head.shape}, expected (classes, {emb_size})")
    return head


def import_outputs(output):
    """(checkpoint, settings YAML) paths of an import into ``output``, both checked writable;
    OutputError for an output without the .ckpt MindSpore's loader requires or that is a folder."""
    if not output.endswith(".ckpt"):
        raise OutputError(f"--output: {output} does not end in .ckpt, which MindSpore's checkpoint loader "
                          "requires (the settings go beside it, as .yaml)")
    yaml_path = output[:-len(".ckpt")] + ".yaml"
    check_writable_file(output, "--output")
    check_writable_file(yaml_path, "--output (its settings file)")
    return output, yaml_path


def state_dict_of(state, path):
    """``state`` (what ``path`` holds) if it is a state dict {name: array}; InputError naming what it holds."""
    if not isinstance(state, dict):
        raise InputError(f"{path}: holds a value of type {type(state).__name__}, not a state dict of named tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise InputError(f"{path}: the entry {str(name)[:60]!r} is of type {type(value).__name__}, not a tensor; "
                             "expected a state dict of named tensors")
    return state


def least_parameters(values):
    """A lower bound of the parameter count of the ECAPA-TDNN that ``values`` (settings) describe: the
    first layer, the 1x1 layers of the three blocks and their squeeze-excitation, the aggregation,
    the attention and the embedding layer."""
    channels, mfa = values["channels"], values["mfa_channels"]
    return (channels * (5 * values["in_channels"] + 6 * channels + 6 * values["se_channels"] + 3 * mfa)
            + mfa * (values["attention_channels"] + 2 * values["emb_size"]))


def _check_declared_size(values, state, path):
    """Refuse, before a network is built for them, settings whose network the state is too small to hold
    (zero-element tensors or a few large shapes would otherwise build a network of any size)."""
    held = sum(value.size for value in state.values())
    least = least_parameters(values)
    if least > held:
        raise InputError(f"{path}: its weight shapes describe a network of at least {least} parameters "
                         f"(channels {values['channels']}, mfa_channels {values['mfa_channels']}), but it holds "
                         f"only {held} values; a damaged or crafted file")


def import_model(name, source, output):
    """Write library ``name``'s model at ``source`` as checkpoint ``output`` (ending in .ckpt) and its
    settings as ``<output without .ckpt>.yaml``; returns (settings dict, YAML path, classes of the head or 0)."""
    lib = library(name)
    output, yaml_path = import_outputs(output)
    model_path, head_path = model_files(name, source)
    state = state_dict_of(read_torch_file(model_path), model_path)
    try:
        values = lib.settings_of(state)
        _check_declared_size(values, state, model_path)
        settings = config_of(values, model_path)
        parameters = from_library(lib, state, {key: tuple(value.shape)
                                               for key, value in network_of(settings).parameters_dict().items()})
    except (LibraryModelError, ConfigError) as error:
        raise InputError(f"{model_path}: {error}; is it {name}'s ECAPA-TDNN?") from None
    head = _head_of(name, state, head_path, values["emb_size"])
    entries = [{"name": EMBEDDING_PREFIX + key, "data": Tensor(value)} for key, value in parameters.items()]
    if head is not None:
        entries.append({"name": HEAD_WEIGHT, "data": Tensor(head)})
        values["aam_scale"] = lib.aam_scale
    save_checkpoint(entries, output)
    values["model_path"] = output
    with atomic_write(yaml_path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(f"# Settings of {name}'s model imported from {model_path}\n")
        yaml.safe_dump(values, handle, sort_keys=False)
    return values, yaml_path, 0 if head is None else int(head.shape[0])


def export_model(name, checkpoint, settings, output, with_head=False):
    """Write ``checkpoint`` (of a network built from ``settings``) as library ``name``'s files in the
    folder ``output``; returns (paths written, paths removed). The files are written together: a
    failure leaves none of them changed. A SpeechBrain head file of an earlier export that this
    checkpoint has no head for is removed, so the folder never pairs the network with another
    model's classifier. InputError when the settings describe a network the library's model
    class does not compute."""
    lib = library(name)
    mismatches = lib.mismatches(settings)
    if mismatches:
        raise InputError(f"the settings do not describe {name}'s network: {'; '.join(mismatches)} "
                         "(give the run's settings with --config)")
    entries = read_checkpoint(checkpoint)
    network = network_of(settings)
    load_embedding_weights(checkpoint, network, entries)
    parameters = {key: value.asnumpy() for key, value in network.parameters_dict().items()}
    make_folder(output, "output")
    model_name, head_name = LIBRARY_FILES[name]
    files = {os.path.join(output, model_name): to_library(lib, parameters)}
    head = entries[HEAD_WEIGHT].asnumpy() if HEAD_WEIGHT in entries else None
    if head is not None and head_name:
        files[os.path.join(output, head_name)] = {lib.head: head}
    elif head is not None and with_head:
        files[os.path.join(output, model_name)][lib.head] = head
    with contextlib.ExitStack() as renames:  # each file renamed into place only once all are written
        for path, tensors in files.items():
            write_torch_archive(renames.enter_context(atomic_write(path, suffix=".pt")), tensors)
    stale = os.path.join(output, head_name) if head_name and head is None else None
    removed = [stale] if stale and os.path.isfile(stale) else []
    for path in removed:
        os.remove(path)
    return list(files), removed
