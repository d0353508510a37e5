"""What the node/ tests share: the in-process ROS graph they observe the node through."""
import pytest


@pytest.fixture
def graph():
    """Return an in-process rclpy node with an executor (ros_harness.Graph), closed after."""
    pytest.importorskip('rclpy')
    from support.ros_harness import Graph
    g = Graph()
    yield g
    g.close()
