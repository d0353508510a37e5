"""The ROS 2 face: the depth node, its parameter table and image message decoding."""
