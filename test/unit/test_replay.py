"""evaluation/replay.py's pure parts: the ROS environment of a replay, its topics and remaps."""
from dpt_ros.evaluation import cli
from dpt_ros.evaluation.replay import ReplayTopics, ros_environment


def test_ros_environment_leaves_the_callers_environment_alone():
    environ = {'PATH': '/bin'}
    env = ros_environment(start_node=True, environ=environ)
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 1 <= int(env['ROS_DOMAIN_ID']) <= 100
    assert environ == {'PATH': '/bin'}
    given = {'ROS_DOMAIN_ID': '42', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}
    assert ros_environment(start_node=True, environ=given) == given
    assert 'ROS_DOMAIN_ID' not in ros_environment(start_node=False, environ={})


class _Src:
    image_topic = '/front/image_raw/compressed'
    image_type = 'sensor_msgs/msg/CompressedImage'
    camera_info_topic = '/front/camera_info'


def test_replay_topics_and_node_remaps():
    args = cli.build_parser().parse_args(['replay', 'bag'])
    t = ReplayTopics.plan(args, _Src())
    assert (t.publish, t.image_base, t.ns, t.info) == (
        '/front/image_raw/compressed', '/front/image_raw', '/front', '/front/camera_info')
    assert t.depth == '/front/depth_relative' and t.compressed
    assert t.remaps() == [('__ns', '/front'), ('image/compressed', '/front/image_raw/compressed')]
    assert t.outputs(color=False) == ['/front/depth_relative', '/front/depth']
