"""
package.xml: well-formed, valid format 3, and declaring every ROS package the code imports.

ament_xmllint has no wheel; catkin_pkg (what colcon, rosdep and bloom read package.xml with)
checks the format instead, and warnings count as failures.
"""
import ast
import glob
import os
import sys
import warnings
import xml.dom.minidom

from catkin_pkg.package import parse_package
from support.paths import ROOT

# ROS packages used where no ament prefix lists them: launch is not on PyPI (tests use a
# double), ros2launch is optional in tests.
NOT_INSTALLED_HERE = {'launch', 'launch_ros', 'ros2launch'}


def _imports(paths) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                names |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split('.')[0])
    return names


def _is_ros_package(name: str) -> bool:
    if name == 'dpt_ros':   # itself: colcon test puts its own install on AMENT_PREFIX_PATH
        return False
    prefixes = [sys.prefix] + [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(
        os.pathsep) if p]
    return name in NOT_INSTALLED_HERE or any(
        os.path.isfile(os.path.join(p, 'share', name, 'package.xml')) for p in prefixes)


def _files(*patterns) -> list[str]:
    return sorted(f for p in patterns for f in glob.glob(os.path.join(ROOT, p), recursive=True))


def test_package_xml_is_well_formed_format_3_without_warnings():
    xml.dom.minidom.parse(os.path.join(ROOT, 'package.xml'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        pkg = parse_package(ROOT, warnings=(found := []))
    assert pkg.package_format == 3 and pkg.name == 'dpt_ros'
    # A ResourceWarning here is some other object collected meanwhile, not package.xml.
    assert found == [] and [str(w.message) for w in caught
                            if not issubclass(w.category, ResourceWarning)] == []
    pkg.validate()


def test_every_imported_ros_package_is_declared():
    pkg = parse_package(ROOT)
    run = {d.name for d in pkg.exec_depends + pkg.build_export_depends}
    test = {d.name for d in pkg.test_depends}
    runtime = _imports(_files('dpt_ros/**/*.py', 'launch/*.py'))
    tests = _imports(_files('test/**/*.py'))
    assert {'rclpy', 'rcl_interfaces', 'sensor_msgs'} <= runtime   # the check sees them
    missing_run = {n for n in runtime if _is_ros_package(n)} - run
    missing_test = {n for n in tests if _is_ros_package(n)} - run - test
    assert (missing_run, missing_test) == (set(), set())


def test_rviz2_is_not_declared_as_a_run_dependency():
    """
    It is optional (rviz:=true only, refused where missing).

    Installing dpt_ros must not pull in a GUI, and package.xml must not say otherwise.
    """
    assert 'rviz2' not in {d.name for d in parse_package(ROOT).exec_depends}
