"""Starting and supervising train.py for the launchers (scripts/launch.py), and eval.py for distributed evaluation.

- :mod:`src.launch.rank_table` reads and checks HCCL rank tables (version 1.0) and finds
  the ranks of this server;
- :mod:`src.launch.processes` runs a child in the foreground (its output also copied to a
  log) or supervises one process per rank, each in its own session;
- :mod:`src.launch.runs` holds the three launch modes: standalone, rank table and msrun.

Nothing here imports MindSpore: the launcher starts quickly under any interpreter.
"""
