"""`python -m dpt_ros.view`: the depth_view console script."""
from dpt_ros.ros.view_node import main

main()
