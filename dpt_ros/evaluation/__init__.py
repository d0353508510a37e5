"""Evaluation on rosbags: sample bags, bag I/O, offline and replay runs, the HTML report."""
