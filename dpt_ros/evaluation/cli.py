"""
bag_eval: depth on a rosbag2, offline through the pipeline or replayed through a live node.

    bag_eval offline BAG [--backend torch|openvino|tt] [--weights auto] [--pcc-frames 2] [-o DIR]
    bag_eval replay  BAG [--start-node] [--rate 1.0] [--params-file config/dpt.yaml] [-o DIR]

offline: every frame of the image topic goes straight into `DepthPipeline`, as fast as the
    backend allows; PCC of the first frames against the CPU fp32 reference (same weights).
replay: the bag's frames (and camera_info) are published over DDS at the recorded rate times
    --rate with their header stamps, to a running depth node (or one started here with
    --start-node); its outputs are recorded to an output bag and matched to the inputs by
    stamp: delivered / dropped frames, output FPS, latency p50/p95/p99 — what a robot sees.

Both: with a ground-truth depth topic (32FC1 m or 16UC1 mm; auto-detected), AbsRel, RMSE and
delta accuracies after per-frame scale-and-shift alignment in inverse depth (MiDaS protocol).
The report (report.json + report.html with charts and frame strips) goes to --output.
Exit status: 0 when at least one frame was evaluated, 1 when nothing could be, 2 for usage.
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
import sys

from dpt_ros import vocabulary
from dpt_ros.backends import BackendOptions
from dpt_ros.errors import EvalError
from dpt_ros.evaluation import bagio, results
from dpt_ros.evaluation.results import EvalResult

log = logging.getLogger('dpt_ros.evaluation.cli')

MODES = ('offline', 'replay')
DEFAULT_STRIPS = 6
DEFAULT_PCC_FRAMES = 2
# torch's first two or three calls are much slower than the rest (allocator and kernel
# caches); a replayed stream must not pay for that in dropped frames, so replay warms up more.
DEFAULT_WARMUP = {'offline': 1, 'replay': 3}


def build_parser() -> argparse.ArgumentParser:
    """Return the bag_eval command line."""
    p = argparse.ArgumentParser(
        prog='bag_eval', description='Evaluate DPT depth on a rosbag2 (mcap or sqlite3): '
        'offline through the pipeline, or replayed through a running depth node.')
    p.add_argument('mode', choices=MODES, help='offline: frames straight into the pipeline; '
                   'replay: publish to a depth node over DDS and measure its outputs')
    p.add_argument('bag', help='rosbag2 directory (or a .mcap/.db3 file inside one)')
    p.add_argument('-o', '--output', default=None,
                   help='report directory (default: generated/bag_eval/<bag>-<mode>)')
    p.add_argument('--image-topic', default=None, help='camera image topic (default: the '
                   'only Image/CompressedImage topic not named like depth)')
    p.add_argument('--gt-topic', default='auto', help='ground-truth depth topic (32FC1 m or '
                   "16UC1 mm); 'auto' (default) = the one Image topic named like depth; "
                   "'none' = no accuracy metrics")
    p.add_argument('--max-frames', type=int, default=0, help='evaluate at most N frames')
    p.add_argument('--strips', type=int, default=DEFAULT_STRIPS,
                   help='frames illustrated in the report (default: %(default)s)')
    p.add_argument('--warmup', type=int, default=None,
                   help='untimed warm-up runs (offline) or frames sent and answered one by '
                   'one before the replay (default: offline %d, replay %d)'
                   % (DEFAULT_WARMUP['offline'], DEFAULT_WARMUP['replay']))
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    _add_backend_group(p)
    _add_offline_group(p)
    _add_replay_group(p)
    return p


def _add_backend_group(p: argparse.ArgumentParser) -> None:
    d = BackendOptions()
    g = p.add_argument_group('model/backend (offline; passed to the node with --start-node)')
    g.add_argument('--backend', default='torch',
                   help='torch | openvino | tt (default: %(default)s)')
    g.add_argument('--weights', default=d.weights,
                   help='auto | Intel/dpt-large | <dir> | random | tiny-random '
                   '(default: %(default)s)')
    g.add_argument('--image-size', type=int, default=d.image_size)
    g.add_argument('--device', default=d.device)
    g.add_argument('--dtype', default=vocabulary.DEFAULT_DTYPE, choices=vocabulary.DTYPES,
                   help='auto = bf16 where the CPU runs it natively, else fp32 '
                   '(default: %(default)s)')
    g.add_argument('--compile', action='store_true', default=d.compile)
    g.add_argument('--execution-mode', default=d.execution_mode,
                   choices=vocabulary.EXECUTION_MODES)
    g.add_argument('--dp', type=int, default=d.dp)
    g.add_argument('--seed', type=int, default=d.seed)
    g.add_argument('--threads', type=int, default=d.threads)
    g.add_argument('--no-fallback', action='store_true',
                   help='offline: fail instead of falling back to torch cpu')


def _add_offline_group(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group('offline')
    o.add_argument('--pcc-frames', type=int, default=DEFAULT_PCC_FRAMES,
                   help='frames compared with the CPU fp32 reference (0 = skip; '
                   'default: %(default)s)')


def _add_replay_group(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group('replay')
    r.add_argument('--rate', type=float, default=1.0,
                   help='replay speed factor on the recorded rate (default: %(default)s)')
    r.add_argument('--start-node', action='store_true',
                   help='start the depth node here (python -m dpt_ros.node) and stop it after')
    r.add_argument('--params-file', default=None,
                   help='params file for --start-node (default: the package config/dpt.yaml)')
    r.add_argument('--node-param', action='append', default=[], metavar='NAME:=VALUE',
                   help='extra node parameter for --start-node (repeatable)')
    r.add_argument('--node-ns', default=None, help='namespace the node publishes its outputs '
                   "under (default: the image topic's namespace)")
    r.add_argument('--publish-topic', default=None,
                   help="topic the frames are published on (default: the bag's topic)")
    r.add_argument('--camera-info-topic', default=None,
                   help='topic camera_info is published on (default: <image ns>/camera_info)')
    r.add_argument('--wait-node-s', type=float, default=120.0,
                   help='how long to wait for the node to appear and answer (default: '
                   '%(default)s s; a DPT-Large start on CPU takes tens of seconds)')
    r.add_argument('--drain-s', type=float, default=5.0,
                   help='how long to wait for outstanding outputs after the last frame, on '
                   'top of 3 model round trips as measured in the warm-up (default: '
                   '%(default)s s)')
    r.add_argument('--output-bag', default=None,
                   help="where the node's outputs are recorded (default: <output>/outputs_bag)")
    r.add_argument('--output-storage', default='mcap', choices=bagio.STORAGES)
    r.add_argument('--no-color', action='store_true',
                   help='do not subscribe to the colour output (the node then skips colouring)')
    r.add_argument('--no-output-bag', action='store_true', help='do not record outputs')


def _check_args(p: argparse.ArgumentParser, args) -> None:
    if args.warmup is None:
        args.warmup = DEFAULT_WARMUP[args.mode]
    if args.rate <= 0 or not math.isfinite(args.rate):
        p.error(f'--rate must be > 0, got {args.rate}')
    for name in ('max_frames', 'strips', 'warmup', 'pcc_frames'):
        if getattr(args, name) < 0:
            p.error(f'--{name.replace("_", "-")} must be >= 0')
    if args.image_size < 32 or args.image_size % 16:
        p.error(f'--image-size must be a multiple of 16 and >= 32, got {args.image_size}')


def _print_summary(res: dict, paths: dict) -> None:
    thr = res.get('throughput', {})
    lines = []
    if res.get('weights_random'):
        lines.append('WEIGHTS ARE RANDOM: depth and accuracy figures are not meaningful.')
    if res['mode'] == 'offline':
        lines.append(f"frames: {thr['frames_evaluated']}/{thr['frames_in_bag']}  "
                     f"fps_e2e: {thr['fps_e2e']:.2f}  latency ms p50/p95/p99: "
                     f"{thr['latency_ms_p50']:.1f}/{thr['latency_ms_p95']:.1f}/"
                     f"{thr['latency_ms_p99']:.1f}")
        if res.get('pcc', {}).get('pcc_min') is not None:
            lines.append(f"PCC vs CPU fp32 reference: min {res['pcc']['pcc_min']:.6f} over "
                         f"{res['pcc']['frames']} frames")
    else:
        lines.append(f"delivered {thr['frames_delivered']}/{thr['frames_sent']} "
                     f"(dropped {thr['frames_dropped']})  output fps: {thr['output_fps']:.2f} "
                     f"(input {thr['input_fps_actual']:.2f})  latency ms p50/p95/p99: "
                     f"{thr['latency_ms_p50']:.1f}/{thr['latency_ms_p95']:.1f}/"
                     f"{thr['latency_ms_p99']:.1f}")
    acc = res.get('accuracy') or {}
    if acc.get('frames'):
        lines.append(f"accuracy over {acc['frames']} GT frames: AbsRel {acc['abs_rel']:.4f}  "
                     f"RMSE {acc['rmse']:.4f} m  δ1 {acc['delta1']:.4f}  δ2 {acc['delta2']:.4f}"
                     f"  δ3 {acc['delta3']:.4f}  (scale {acc['scale']:.4g}, shift "
                     f"{acc['shift']:.4g})")
    for w in res.get('warnings', []):
        lines.append(f'warning: {w}')
    lines.append(f"report: {paths['html']}")
    lines.append(f"json:   {paths['json']}")
    print('\n'.join(lines))


def run_mode(args, src: bagio.BagSource) -> EvalResult:
    """Run the chosen mode on an inspected bag."""
    if args.mode == 'offline':
        from dpt_ros.evaluation.offline import run_offline
        return run_offline(args, src)
    from dpt_ros.evaluation.replay import ReplaySession
    from dpt_ros.evaluation.replay_results import replay_results
    return replay_results(ReplaySession(args, src).run())


def evaluate(args) -> tuple[EvalResult, dict]:
    """Run the chosen mode and write the report; returns (results, report paths)."""
    gt = None if str(args.gt_topic).lower() in ('none', '', 'off') else args.gt_topic
    src = bagio.inspect_bag(args.bag, image_topic=args.image_topic, gt_topic=gt)
    if args.output is None:
        args.output = str(Path('generated') / 'bag_eval' / f'{src.path.name}-{args.mode}')
    Path(args.output).mkdir(parents=True, exist_ok=True)
    log.info('bag %s [%s]: %d frames on %s, ground truth: %s', src.path, src.storage,
             src.frame_count, src.image_topic, src.gt_topic or 'none')
    res = run_mode(args, src)
    res.title = f'{src.path.name} ({args.mode})'
    res.input = results.input_section(src)
    res.summary = results.summary_section(res, args.weights)
    return res, res.write_report(args.output)


def main(argv: list[str] | None = None) -> int:
    """Console entry point. 0: something was evaluated; 1: nothing could be; 2: usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='[%(levelname)s] %(name)s: %(message)s')
    try:
        res, paths = evaluate(args)
    except bagio.BagError as err:
        print(f'bag_eval: {err}', file=sys.stderr)
        return 1
    except EvalError as err:
        print(f'bag_eval: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('bag_eval: interrupted', file=sys.stderr)
        return 1
    _print_summary(res.as_json(), paths)
    if res.evaluated == 0:
        print('bag_eval: no frame could be evaluated', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
