"""
`depth_view` as a process (dpt_ros/ros/view_node.py), started as its users start it.

It serves, stops on SIGINT, and refuses a port in use or a bad parameter with one line and
exit code 2.
"""
import socket
import subprocess
import sys

from dpt_ros.errors import ViewError
from dpt_ros.view.history import StatsHistory
from dpt_ros.view.server import ViewServer
import pytest
from support.paths import ROOT


def test_depth_view_serves_and_stops_cleanly_on_sigint():
    from support.view import ViewProcess
    view = ViewProcess('jpeg')
    state = view.state()
    assert view.url.startswith('http://127.0.0.1:') and state['clients'] == 0
    assert set(state['streams']) == {'image', 'depth_relative/color'}
    assert view.close() == 0
    assert not any('Traceback' in line for line in view.lines), view.lines


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ViewError, match=f'port {port} on 127.0.0.1 is in use'):
            ViewServer([], StatsHistory(), port=port).start()
        out = subprocess.run([sys.executable, '-m', 'dpt_ros.depth_view', '--ros-args', '-p',
                              f'port:={port}'], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 2
    assert f'depth_view: port {port} on 127.0.0.1 is in use' in out.stderr


@pytest.mark.parametrize('arg, words', [('port:=70000', 'port'), ('image_format:=gif', 'jpeg'),
                                        ('jpeg_quality:=high', 'jpeg_quality')])
def test_a_bad_parameter_is_one_line_and_exit_2(arg, words):
    out = subprocess.run([sys.executable, '-m', 'dpt_ros.depth_view', '--ros-args', '-p', arg],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert 'Traceback' not in out.stderr
    lines = [x for x in out.stderr.splitlines() if x.startswith('depth_view: ')]
    assert len(lines) == 1 and words in lines[0], out.stderr
