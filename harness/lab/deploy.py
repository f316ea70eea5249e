"""Deploy firmware to a board's flash through the raw REPL.

`build` compiles a firmware tree with mpy-cross into a cache keyed by content hash; `deploy`
copies only the files whose hash differs from the board's manifest (`/flhil_manifest.json`) and
removes files that left the tree.
"""

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from flhil.harness import FIRMWARE_PACKAGE, find_tool
from flhil.harness.errors import HarnessError

MANIFEST = "/flhil_manifest.json"
RUN_CONFIG = "/flhil_run.json"
KEEP_SOURCE = ("main.py", "boot.py")  # the board runs these by name, so they stay .py
SKIP_DIRS = {"__pycache__", ".git"}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def default_cache_dir():
    return Path.home() / ".cache" / "flhil" / "mpy"


def mpy_cross_version(mpy_cross="mpy-cross"):
    mpy_cross = find_tool(mpy_cross) or mpy_cross
    try:
        out = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise HarnessError(f"mpy-cross not usable ({mpy_cross}): {e}") from e
    return out.stdout.strip()


def build(firmware_dir, cache_dir=None, compile=True, keep_source=KEEP_SOURCE, mpy_cross="mpy-cross",
          mpy_cross_args=(), prefix=""):
    """Map remote path -> local file for every file of `firmware_dir`.

    .py files are compiled to .mpy (except `keep_source`, relative paths) and cached under
    `cache_dir` by the hash of source, compiler version and arguments; other files go as they are.
    `prefix` is a remote folder, e.g. "/flhil" so that `import flhil.node` works.
    """
    root = Path(firmware_dir)
    if not root.is_dir():
        raise HarnessError(f"firmware directory not found: {root}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    salt = ""
    if compile:
        mpy_cross = find_tool(mpy_cross) or mpy_cross
        salt = mpy_cross_version(mpy_cross) + "|" + " ".join(mpy_cross_args)
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or any(p in SKIP_DIRS or p.startswith(".") for p in rel.parts):
            continue
        remote = prefix.rstrip("/") + "/" + rel.as_posix()
        if compile and path.suffix == ".py" and rel.as_posix() not in keep_source:
            files[remote[:-3] + ".mpy"] = _compiled(path, rel, cache, salt, mpy_cross, mpy_cross_args)
        else:
            files[remote] = path
    return files


def _compiled(src, rel, cache, salt, mpy_cross, args):
    key = sha256(salt.encode() + b"\0" + rel.as_posix().encode() + b"\0" + src.read_bytes())
    out = cache / f"{key}.mpy"
    if out.exists():
        return out
    tmp = cache / f"{key}.tmp"
    proc = subprocess.run([mpy_cross, *args, "-s", rel.as_posix(), "-o", str(tmp), str(src)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise HarnessError(f"mpy-cross failed on {src}: {proc.stderr.strip() or proc.stdout.strip()}")
    tmp.replace(out)
    return out


@dataclass
class DeployResult:
    written: list = field(default_factory=list)  # remote paths copied
    skipped: list = field(default_factory=list)  # remote paths already up to date
    removed: list = field(default_factory=list)  # remote paths of the old manifest no longer deployed


def read_manifest(repl, timeout=10.0):
    data = repl.read_file(MANIFEST, timeout)
    try:
        data = json.loads(data or b"{}")
    except ValueError:
        return {}  # a damaged manifest only costs a full copy
    return data if isinstance(data, dict) else {}


def write_file(repl, remote, data, timeout=30.0):
    """Write bytes to a board file (parent folders made; atomic: a temp file renamed)."""
    repl.write_file(remote, data, timeout)


def remove_file(repl, remote, timeout=10.0):
    repl.remove_file(remote, timeout)


def deploy(repl, files, force=False, timeout=30.0):
    """Copy `files` (remote -> local path) whose content differs from the board's manifest."""
    manifest = {} if force else read_manifest(repl, timeout)
    result = DeployResult()
    new = {}
    for remote, local in sorted(files.items()):
        data = Path(local).read_bytes()
        digest = sha256(data)
        new[remote] = digest
        if manifest.get(remote) == digest:
            result.skipped.append(remote)
            continue
        write_file(repl, remote, data, timeout)
        result.written.append(remote)
    for remote in sorted(set(manifest) - set(new)):
        remove_file(repl, remote, timeout)  # e.g. an old x.py would shadow the new x.mpy
        result.removed.append(remote)
    if result.written or result.removed or manifest != new:
        write_file(repl, MANIFEST, json.dumps(new, sort_keys=True).encode(), timeout)
    return result


def write_run_config(repl, run_config, path=RUN_CONFIG, timeout=10.0):
    """Write the run config JSON to the board (it may hold the Wi-Fi password: never log it)."""
    write_file(repl, path, json.dumps(run_config, sort_keys=True).encode(), timeout)


def clear_cache(cache_dir=None):
    shutil.rmtree(Path(cache_dir) if cache_dir else default_cache_dir(), ignore_errors=True)


BOARD_ENTRY = ("boot.py", "main.py")


def build_firmware(firmware_dir, cache_dir=None, compile=True, mpy_cross="mpy-cross"):
    """The fl-hil flash layout: the package under /flhil (so `import flhil.node` works) and
    firmware/board/boot.py and main.py at the flash root, as source, where the board runs them."""
    keep = tuple("board/" + name for name in BOARD_ENTRY)
    files = build(firmware_dir, cache_dir, compile=compile, keep_source=keep, mpy_cross=mpy_cross,
                  prefix="/" + FIRMWARE_PACKAGE)
    for name in BOARD_ENTRY:
        src = files.pop("/%s/board/%s" % (FIRMWARE_PACKAGE, name), None)
        if src is not None:
            files["/" + name] = src
    return files
