"""Entry point `python -m dpt_ros.bag_eval`: rosbag evaluation (dpt_ros/evaluation/bag_eval.py)."""
import sys

from dpt_ros.evaluation.bag_eval import main

if __name__ == '__main__':
    sys.exit(main())
