"""
The live depth view: a page on localhost with input, colour depth and the node's diagnostics.

Pure parts (no rclpy): `history` keeps the diagnostics over the last minutes, `frames` keeps the
latest frame per stream and encodes it only for a connected page, `server` serves the page and
pushes frames and stats over a websocket. The ROS glue is dpt_ros/ros/view_node.py.
"""
