"""ECAPA-TDNN speaker verification in MindSpore.

The programs (train.py, eval.py, ...) limit MindSpore's own log to errors unless GLOG_v is
set (GLOG_v=2 shows warnings); importing this package changes nothing.
"""
