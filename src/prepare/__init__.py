"""Offline preparation of the corpora, run once before training (scripts/prepare_voxceleb.py,
scripts/split_musan.py): VoxCeleb m4a -> 16 kHz wav conversion, the train and eval lists,
MUSAN chunking and the RIR list. Training and evaluation never import this package.
"""
