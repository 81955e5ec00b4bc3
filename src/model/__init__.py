"""Speaker embedding networks and margin heads, built by name (see :mod:`src.model.registry`).

Importing the package registers every model and head the project ships:
``ecapa_tdnn`` (src/model/ecapa_tdnn.py), ``wespeaker_ecapa_tdnn`` (src/model/wespeaker_ecapa.py)
and the ``aam`` head (src/model/aam_softmax.py).
"""
from src.model import aam_softmax, ecapa_tdnn, wespeaker_ecapa  # noqa: F401  (registration)
from src.model.registry import (HEADS, MODELS, build_embedding_network, build_head,  # noqa: F401
                                check_model_settings, count_parameters, model_entry,
                                network_description, register_head, register_model)
