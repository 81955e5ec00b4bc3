"""Scripts that measure the figures the documentation quotes (see README.md in this folder)."""
