"""Entry point `python -m dpt_ros.bag_eval`: rosbag evaluation (dpt_ros/evaluation/cli.py)."""
import sys

from dpt_ros.evaluation.cli import main

if __name__ == '__main__':
    sys.exit(main())
