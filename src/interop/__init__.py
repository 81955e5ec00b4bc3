"""Interchange with other toolkits: PyTorch checkpoint files and the parameter maps of public ECAPA-TDNN models."""
