"""ament_python build for dpt_ros."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'dpt_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    # The depth view's page and script.
    package_data={'dpt_ros.view': ['static/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='dpt_ros maintainers',
    maintainer_email='dpt-ros@example.com',
    description='DPT-Large monocular depth for ROS 2 on Tenstorrent Wormhole (TTNN) or torch.',
    license='Apache-2.0',
    # colcon runs tests only when 'test' extras exist; tests_require is ignored by setuptools.
    extras_require={'test': ['pytest<9']},
    entry_points={
        'console_scripts': [
            'depth_node = dpt_ros.ros.entry:main',
            'runner = dpt_ros.demo.runner:main',
            'eval_pcc = dpt_ros.demo.eval_pcc:main',
            'bag_eval = dpt_ros.evaluation.cli:main',
            'make_sample_bag = dpt_ros.evaluation.sample_bag:main',
            'depth_view = dpt_ros.ros.view_node:main',
        ],
    },
)
