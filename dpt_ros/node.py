"""Entry point `python -m dpt_ros.node`: the depth node (dpt_ros/ros/entry.py)."""
import sys

from dpt_ros.ros.entry import main

if __name__ == '__main__':
    sys.exit(main())
