"""Entry point `python -m dpt_ros.depth_view`: the browser view (dpt_ros/ros/view_node.py)."""
import sys

from dpt_ros.ros.view_node import main

if __name__ == '__main__':
    sys.exit(main())
