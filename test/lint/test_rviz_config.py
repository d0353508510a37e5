"""config/depth.rviz shows the node's input and colourised depth, under the node's topic names."""
import os

from dpt_ros import vocabulary
from support.paths import ROOT
import yaml

RVIZ = os.path.join(ROOT, 'config', 'depth.rviz')


def image_displays():
    doc = yaml.safe_load(open(RVIZ))
    displays = doc['Visualization Manager']['Displays']
    return {d['Name']: d for d in displays if d['Class'] == 'rviz_default_plugins/Image'}


def test_rviz_config_parses_and_shows_input_and_colour_depth_enabled():
    shown = {d['Topic']['Value'] for d in image_displays().values() if d['Enabled']}
    # The node in the root namespace: what the launch file remaps these from.
    assert shown == {'/' + vocabulary.TOPIC_IMAGE, '/' + vocabulary.TOPIC_DEPTH_RELATIVE_COLOR}


def test_every_rviz_topic_is_one_the_node_uses():
    node_topics = {'/' + t for t in (vocabulary.TOPIC_IMAGE, vocabulary.TOPIC_DEPTH_RELATIVE,
                                     vocabulary.TOPIC_DEPTH_RELATIVE_COLOR,
                                     vocabulary.TOPIC_DEPTH_METRIC)}
    for name, d in image_displays().items():
        assert d['Topic']['Value'] in node_topics, name
        # Our outputs are reliable publishers; a reliable display matches them.
        assert d['Topic']['Reliability Policy'] == 'Reliable'


def test_launch_remaps_exactly_the_rviz_topics():
    src = open(os.path.join(ROOT, 'launch', 'depth.launch.py')).read()
    for d in image_displays().values():
        if d['Enabled']:
            assert f"('{d['Topic']['Value']}'," in src, d['Topic']['Value']


def test_the_point_cloud_display_is_the_nodes_points_topic_off_by_default():
    doc = yaml.safe_load(open(RVIZ))
    clouds = [d for d in doc['Visualization Manager']['Displays']
              if d['Class'] == 'rviz_default_plugins/PointCloud2']
    assert [(d['Topic']['Value'], d['Enabled']) for d in clouds] == [
        ('/' + vocabulary.TOPIC_POINTS, False)]   # points need metric depth: opt in
    assert clouds[0]['Color Transformer'] == 'RGB8'   # the packed rgb field
