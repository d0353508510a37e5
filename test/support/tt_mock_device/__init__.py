"""
TEST DOUBLE of a Tenstorrent card's kernel toolchain and execution: a mock N150/N300/T3000.

The real ttnn 0.81.1 runs all of its host-side work for our model on a mock cluster
(TT_METAL_MOCK_CLUSTER_DESC_PATH): every op's validation, buffer allocation against the real
L1 / L1_SMALL / DRAM banks, circular buffers checked against L1 buffers, program creation,
the program cache, submeshes and two command queues. What cannot exist here is stood in for:

* the SFPI kernel compiler (`kernel_cc_stand_in.c`): compiles hand out one rv32 template
  object, links run binutils' ld with tt-metal's own linker scripts, so no kernel is compiled;
* device execution: on a mock nothing runs (ops return at once, reads give zeros), and three
  host paths of trace capture / replay and events would crash; `replay_shim.cpp`
  (LD_PRELOAD) makes those do nothing. A captured trace then holds no commands, so the trace
  region's fit is NOT checked.

One mock-only false failure is patched in the overlay of ttnn's runtime files: the ProgramSpec
node-bounds check reads the grid of TENSIX dispatch (8x7 per chip) while the mock opens with
ETH dispatch (8x8), so the overlay's Wormhole core descriptor says 8x8 for TENSIX dispatch too.
A second overlay keeps ttnn's own descriptor (`Harness.env(..., widened=False)`): with WORKER
dispatch the device really opens 8x7 and the check is the real one (no patch at all).

`prepare()` builds all of it once into a folder of its own (a stamp says when it is current);
`DryRun` runs `dry_run_process.py` in a subprocess with the mock's environment. Needs binutils for
RISC-V and a C/C++ compiler (`SETUP_COMMAND`); scripts/test.sh installs them where it runs as
root. Nothing outside that folder, the test's temp dirs and apt is touched.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DATA = HERE.parent / 'data'
SETUP_COMMAND = 'apt-get install -y binutils-riscv64-unknown-elf gcc g++'
TOOLS = {'riscv64-unknown-elf-as': 'binutils-riscv64-unknown-elf',
         'riscv64-unknown-elf-ld': 'binutils-riscv64-unknown-elf', 'cc': 'gcc', 'g++': 'g++'}
CLUSTERS = {'wormhole_n150': DATA / 'wormhole_n150_cluster.yaml',
            'wormhole_n300': DATA / 'wormhole_n300_cluster.yaml',
            'wormhole_t3000': DATA / 'wormhole_t3000_cluster.yaml'}
# The N300 opens with ETH dispatch on a mock; its TENSIX-dispatch grid is widened to match.
_CORE_DESCRIPTOR = 'wormhole_b0_80_arch.yaml'
_WIDENED_SECTION = 'nebula_x2:'
_SOURCES = ('__init__.py', 'kernel_cc_stand_in.c', 'template_kernel.S', 'replay_shim.cpp')


class Unavailable(RuntimeError):
    """The harness cannot be built here; the message says what to install."""


def default_dir() -> pathlib.Path:
    """Where the harness lives: $DPT_TT_MOCK_DIR, else build_ws/tt_mock_device (ignored)."""
    return pathlib.Path(os.environ.get('DPT_TT_MOCK_DIR', ROOT / 'build_ws' / 'tt_mock_device'))


def ttnn_package() -> pathlib.Path:
    spec = importlib.util.find_spec('ttnn')
    if spec is None or spec.origin is None:
        raise Unavailable('ttnn is not installed (scripts/setup_env.sh installs it)')
    return pathlib.Path(spec.origin).resolve().parent


def missing_tools() -> list[str]:
    """Debian packages whose tools are absent."""
    return sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})


class Harness:
    """A built harness folder: overlay runtime root, shim, kernel cache, weights cache."""

    def __init__(self, folder: pathlib.Path):
        self.dir = folder
        self.runtime_root = folder / 'runtime_root'
        self.plain_root = folder / 'runtime_root_plain'     # ttnn's own core descriptors
        self.shim = folder / 'libtt_mock_replay_shim.so'
        self.kernel_cache = folder / 'kernel_cache'
        self.weights_cache = folder / 'weights_cache'

    def env(self, device: str, base: dict | None = None, *, widened: bool = True) -> dict:
        """
        Return the environment of a process that opens `device` as a mock.

        widened=False runs ttnn's unpatched core descriptors (for WORKER dispatch runs).
        """
        if device not in CLUSTERS:
            raise ValueError(f'no mock cluster for {device!r}; one of {sorted(CLUSTERS)}')
        env = dict(os.environ if base is None else base)
        root = self.runtime_root if widened else self.plain_root
        env.update(TT_METAL_MOCK_CLUSTER_DESC_PATH=str(CLUSTERS[device]),
                   TT_METAL_RUNTIME_ROOT=f'{root}/',
                   TT_METAL_CACHE=f'{self.kernel_cache}/',
                   DPT_ROS_CACHE=str(self.weights_cache),
                   LD_PRELOAD=str(self.shim), PYTHONPATH=str(ROOT))
        env.setdefault('TT_LOGGER_LEVEL', 'warning')
        return env


def _stamp(pkg: pathlib.Path) -> str:
    h = hashlib.sha256(str(pkg).encode())
    for name in _SOURCES:
        h.update((HERE / name).read_bytes())
    for cluster in CLUSTERS.values():
        h.update(cluster.read_bytes())
    return h.hexdigest()


def _overlay(pkg: pathlib.Path, root: pathlib.Path, widen: bool = True) -> None:
    """
    Build `root` as ttnn's package folder in symlinks.

    Two parts are its own instead: runtime/sfpi and (with `widen`) one widened core descriptor.
    """
    shutil.rmtree(root, ignore_errors=True)
    descriptors = root / 'tt_metal' / 'core_descriptors'
    (root / 'runtime' / 'sfpi' / 'compiler' / 'bin').mkdir(parents=True)
    (root / 'runtime' / 'sfpi' / 'include').mkdir()
    descriptors.mkdir(parents=True)
    for entry in pkg.iterdir():
        if entry.name not in ('runtime', 'tt_metal'):
            (root / entry.name).symlink_to(entry)
    for entry in (pkg / 'runtime').iterdir():
        if entry.name != 'sfpi':
            (root / 'runtime' / entry.name).symlink_to(entry)
    for entry in (pkg / 'tt_metal').iterdir():
        if entry.name != 'core_descriptors':
            (root / 'tt_metal' / entry.name).symlink_to(entry)
    for entry in (pkg / 'tt_metal' / 'core_descriptors').iterdir():
        if entry.name != _CORE_DESCRIPTOR:
            (descriptors / entry.name).symlink_to(entry)
    text = (pkg / 'tt_metal' / 'core_descriptors' / _CORE_DESCRIPTOR).read_text()
    (descriptors / _CORE_DESCRIPTOR).write_text(widen_tensix_dispatch_grid(text) if widen
                                                else text)


def widen_tensix_dispatch_grid(text: str) -> str:
    """Return the core descriptor with the N300 row-dispatch TENSIX grid ending at [7, 7]."""
    out, section, changed = [], None, 0
    for line in text.split('\n'):
        if line and not line.startswith((' ', '#')):
            section = line.strip()
        if section == _WIDENED_SECTION and line.strip() == 'end: [7, 6]':
            line = line.replace('[7, 6]', '[7, 7]')
            changed += 1
        out.append(line)
    if changed == 0:
        raise Unavailable(f'{_CORE_DESCRIPTOR} has no 8x7 TENSIX grid to widen: this ttnn '
                          'differs from 0.81.1; check the mock harness against it')
    return '\n'.join(out)


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Unavailable(f'{" ".join(cmd)} failed: {r.stderr.strip()[:500]}')


def prepare(folder: pathlib.Path | None = None) -> Harness:
    """
    Build the harness into `folder` (once; a stamp of its sources says when it is current).

    Raises Unavailable, naming the command to run, when tools or ttnn are missing.
    """
    pkg = ttnn_package()
    missing = missing_tools()
    if missing:
        raise Unavailable(f'the mock-device harness needs {", ".join(missing)}: run '
                          f'`{SETUP_COMMAND}` (scripts/test.sh does so where it runs as root)')
    harness = Harness(pathlib.Path(folder or default_dir()).resolve())
    stamp_file = harness.dir / 'stamp'
    stamp = _stamp(pkg)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return harness
    harness.dir.mkdir(parents=True, exist_ok=True)
    _overlay(pkg, harness.runtime_root)
    _overlay(pkg, harness.plain_root, widen=False)
    template = harness.dir / 'template_kernel.o'
    _run(['riscv64-unknown-elf-as', '-march=rv32im', '-mabi=ilp32',
          str(HERE / 'template_kernel.S'), '-o', str(template)])
    linker = shutil.which('riscv64-unknown-elf-ld')
    compiler = harness.runtime_root / 'runtime' / 'sfpi' / 'compiler' / 'bin' / 'riscv-tt-elf-g++'
    _run(['cc', '-O2', '-std=c11', f'-DTEMPLATE_OBJ="{template}"', f'-DLINKER="{linker}"',
          str(HERE / 'kernel_cc_stand_in.c'), '-o', str(compiler)])
    shutil.copy2(compiler, harness.plain_root / 'runtime' / 'sfpi' / 'compiler' / 'bin')
    _run(['g++', '-O2', '-shared', '-fPIC', '-fno-delete-null-pointer-checks',
          str(HERE / 'replay_shim.cpp'), '-o', str(harness.shim), '-ldl'])
    harness.kernel_cache.mkdir(exist_ok=True)
    harness.weights_cache.mkdir(exist_ok=True)
    stamp_file.write_text(stamp)
    return harness


def dry_run(harness: Harness, out_json: pathlib.Path, *, device: str, args: list[str],
            timeout: float = 600.0, widened: bool = True) -> tuple[dict, str]:
    """Run dry_run_process.py on a mock `device` in a subprocess -> (JSON report, log tail)."""
    cmd = [sys.executable, str(HERE / 'dry_run_process.py'), '--device', device,
           '--out', str(out_json), *args]
    proc = subprocess.run(cmd, env=harness.env(device, widened=widened), capture_output=True,
                          text=True,
                          timeout=timeout, cwd=str(ROOT))
    tail = (proc.stdout + proc.stderr)[-6000:]
    if not out_json.exists():
        raise AssertionError(f'dry run wrote no report (exit {proc.returncode}):\n{tail}')
    return json.loads(out_json.read_text()), tail
