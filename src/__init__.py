"""ECAPA-TDNN speaker verification in MindSpore.

MindSpore's own log is limited to errors unless GLOG_v is set (GLOG_v=2 shows warnings).
"""
import os

os.environ.setdefault("GLOG_v", "3")
