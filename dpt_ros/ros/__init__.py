"""
The ROS 2 face of the package.

The depth node (node, entry, cameras, points, descriptors, log bridge), its parameter table
(params), image message decoding (image_codec), the node as a child process (node_process)
and the browser view's node (view_node).
"""
