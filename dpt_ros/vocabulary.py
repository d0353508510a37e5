"""
The project's shared words: devices and their chips, execution modes, topic names, limits.

Every module that names a device, a mode or a topic takes it from here, so the runner, the
backends, the node and the evaluation tools cannot disagree. Constants and two helpers (a
topic under a camera namespace, a folder of the on-disk cache); no imports but os.
"""
import os

# Torch devices; 'cuda:N' is accepted wherever 'cuda' is.
TORCH_DEVICES = ('cpu', 'cuda')
# Tenstorrent boards the TT backend opens -> number of chips (= the largest data-parallel dp).
# A T3000 is four N300 boards: eight chips, opened as one 1x8 line of its 2x4 mesh.
TT_DEVICES = {'wormhole_n150': 1, 'wormhole_n300': 2, 'wormhole_t3000': 8}
DEVICES = TORCH_DEVICES + tuple(TT_DEVICES)
# TT execution: eager ops, one replayed trace, or a trace with input copies on a second CQ.
EXECUTION_MODES = ('eager', 'trace', 'trace_2cq')
# TT dispatch cores: ttnn's choice for the board, ethernet cores, or a row of worker cores.
TT_DISPATCH_CORES = ('auto', 'eth', 'worker')
# TT encoder numerics (tt/configs.py PRECISION_PROFILES): today's (the default until a card
# shows the other holds PCC) or the tt-metal ViT demo's faster per-op settings.
TT_PRECISIONS = ('accurate', 'fast')
# TT frames per chip per device run: 1, or 2 (throughput mode: two frames share each program).
TT_CHIP_BATCHES = (1, 2)
# CPU backends of the command-line tools; 'auto' picks the fastest one present.
CPU_BACKEND_CHOICES = ('auto', 'openvino', 'torch')
# Compute dtype of the torch / OpenVINO backends; 'auto' = bf16 where the CPU runs it
# natively, else fp32 (backends/precision.py): the node's and the tools' default.
DTYPES = ('auto', 'fp32', 'bf16')
DEFAULT_DTYPE = 'auto'
# The batch a backend takes from the pipeline: normalized float NCHW, or uint8 pixels it
# normalizes itself (on the device).
INPUT_FORMATS = ('normalized', 'pixels')

# Topic names, relative to each camera namespace (so `image:=...` remappings apply).
# The node's name (launch file, console script, readiness and log lines all use this one).
NODE_NAME = 'depth_node'
TOPIC_IMAGE = 'image'                     # sensor_msgs/Image (transport raw)
COMPRESSED_SUFFIX = 'compressed'          # <image>/compressed: sensor_msgs/CompressedImage
TOPIC_CAMERA_INFO = 'camera_info'         # input camera_info beside the image
# Relative inverse depth, 32FC1, input-sized: larger = nearer, unknown scale and shift. Not
# named `depth`: REP 118 reserves that name for metres.
TOPIC_DEPTH_RELATIVE = 'depth_relative'
TOPIC_DEPTH_RELATIVE_COLOR = 'depth_relative/color'        # bgr8, only while subscribed
# image_transport's compressed forms (only while subscribed): JPEG colour, compressedDepth metres.
TOPIC_DEPTH_RELATIVE_COLOR_COMPRESSED = 'depth_relative/color/compressed'
TOPIC_DEPTH_RELATIVE_INFO = 'depth_relative/camera_info'   # input camera_info, output header
TOPIC_DEPTH_METRIC = 'depth'                               # 32FC1 metres (metric.mode != none)
TOPIC_DEPTH_METRIC_INFO = 'depth/camera_info'
TOPIC_DEPTH_METRIC_COMPRESSED = 'depth/compressedDepth'
# sensor_msgs/PointCloud2 from `depth` in the input's optical frame, only while subscribed.
TOPIC_POINTS = 'points'
TOPIC_DIAGNOSTICS = '/diagnostics'


def in_namespace(ns: str, name: str) -> str:
    """Return topic `name` under camera namespace `ns` ('' = the node's own, so remaps apply)."""
    return f'{ns.rstrip("/")}/{name}' if ns else name


# The on-disk cache (TT prepared weights, OpenVINO models): `cache_dir`, else this variable,
# else ~/.cache/dpt_ros.
CACHE_ENV = 'DPT_ROS_CACHE'


def cache_folder(name: str, cache_dir: str | None = None) -> str:
    """Return the cache's folder `name`: under `cache_dir`, $DPT_ROS_CACHE or ~/.cache/dpt_ros."""
    base = cache_dir or os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser('~'), '.cache', 'dpt_ros')
    return os.path.join(base, name)


# Beyond this many pixels a frame or image is rejected (reason too_large): 2**25 admits 8K UHD
# (7680x4320) and stops a 10k x 10k frame before it costs a second of CPU.
MAX_PIXELS = 1 << 25
