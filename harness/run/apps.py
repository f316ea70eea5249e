"""The app of a run: a built-in (firmware/apps/), a user's Python file, or a module on the user's
app path, in one of two shapes:

- fl-hil's: `async def run(node, args)` (optionally `ARGS = {...}` with defaults);
- an MPT-FLA script, written as upstream's examples are: `async def main()` run by
  `asyncio.run(main())` under `if __name__ == "__main__":`, parameters from `sys.argv`.

A user's app is staged once per content hash: the file and the sibling modules and packages it
imports, the script shape given a generated `__flhil_main__` (the `__main__` block as a coroutine,
with `asyncio.run(x)` awaited (what x returns, if not None, is the node's result), `time.sleep` as an asyncio sleep, `input()` answered at once and
`sys.argv` from the scenario's `[args] argv`). Every line of the user's code keeps its number
except inside the `__main__` block. Each staged file is compiled with mpy-cross, so code MicroPython
cannot compile fails before any node runs, naming the user's file and line."""
from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from flhil.harness.config.toml import suggestion
from flhil.harness import find_tool
from flhil.harness.errors import HarnessError

FIRMWARE_APPS = Path(__file__).resolve().parents[2] / "firmware" / "apps"
APP_PATH_ENV = "FLHIL_APPS"  # directories searched for an app named as a module (os.pathsep list)
BOARD_APP_DIR = "/flhil_app"  # where a user's app lives on a board's flash
BOARD_APP_PATH = "flhil_app"  # ...and its sys.path entry, relative to the flash root a board runs in
# (an emulated board's root is a host folder its imports see under this name)
FOOTER = """

# ---- added by fl-hil to run this script under the harness; the lines above are the script's ----
import sys as __flhil_sys
from flhil.compat import asyncio as __flhil_asyncio
__flhil_argv__ = __flhil_sys.argv
__flhil_value__ = None


def __flhil_keep__(value):
    global __flhil_value__
    if value is not None:
        __flhil_value__ = value
    return value


def __flhil_input__(prompt=""):
    print(prompt)
    return ""
"""


class AppError(HarnessError):
    """An app that cannot be found, read, staged or compiled."""


def builtin_apps():
    return sorted(p.stem for p in FIRMWARE_APPS.glob("*.py") if not p.stem.startswith("_")
                  and p.stem != "common")


def is_builtin(app):
    return isinstance(app, str) and app.isidentifier() and (FIRMWARE_APPS / (app + ".py")).is_file()


def app_paths():
    return [p for p in os.environ.get(APP_PATH_ENV, "").split(os.pathsep) if p]


def add_app_paths(folders):
    """Search these folders too (through the environment, so worker processes see them)."""
    paths = app_paths()
    for folder in folders:
        folder = str(Path(folder).resolve())
        if folder not in paths:
            paths.append(folder)
    if paths:
        os.environ[APP_PATH_ENV] = os.pathsep.join(paths)


def locate(app, base_dir=None):
    """The absolute file of a user's app: a path (relative to `base_dir`, the scenario's folder)
    or a module name on the app path. AppError says where it looked."""
    if app.endswith(".py") or "/" in app or os.sep in app:
        path = Path(base_dir or ".") / app
        if not path.is_file():
            raise AppError(f"app file not found: {path}" + (f" (relative to {base_dir})" if base_dir else ""))
        return str(path.resolve())
    searched = app_paths()
    for folder in searched:
        candidate = Path(folder) / (app + ".py")
        if candidate.is_file():
            return str(candidate.resolve())
    where = ("on the app path " + os.pathsep.join(searched)) if searched else \
        f"on an app path (none is set: --flhil-apps, the flhil_apps ini option, or ${APP_PATH_ENV})"
    raise AppError(f"unknown app {app!r}: not a built-in ({', '.join(builtin_apps())}), not a .py file, "
                   f"not a module {where}")


@dataclass
class UserApp:
    """A user's app, staged: `module` is what the node imports from `dir` (the staged folder)."""
    source: str                  # the user's file
    module: str
    dir: str
    shape: str                   # "run" or "script"
    args: dict | None            # ARGS the app declares (None: free-form)
    payload: str = "json"        # what its messages carry: "json" (any JSON value) or "numeric"
    files: list = field(default_factory=list)  # staged files, relative to dir

    def board_files(self, compiled=True, mpy_cross="mpy-cross"):
        """{remote path: local file} for a board's flash."""
        from flhil.harness.lab.deploy import build
        return build(self.dir, compile=compiled, mpy_cross=mpy_cross, prefix=BOARD_APP_DIR)


def _read(path):
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeError) as e:
        raise AppError(f"cannot read app file {path}: {e}") from None
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        raise AppError(f"{path}:{e.lineno}: SyntaxError: {e.msg}") from None
    return text, tree


def _is_main_guard(stmt):
    t = getattr(stmt, "test", None)
    if not isinstance(stmt, ast.If) or not isinstance(t, ast.Compare) or len(t.ops) != 1:
        return False
    sides = [t.left, t.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return isinstance(t.ops[0], ast.Eq) and names and consts


def shape_of(tree):
    names = {s.name for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if "run" in names:
        return "run"
    if any(_is_main_guard(s) for s in tree.body):
        return "script"
    return None


def check_args(declared, args, at, app):
    """Arguments the app does not declare (its ARGS) are a mistake, most often a typo."""
    if declared is None:
        return
    for key in args:
        if key not in declared:
            hint = suggestion(key, declared) or "; the app takes: " + ", ".join(sorted(declared))
            (at / key).fail(f"unknown argument of app {app}{hint}")


def declared_payload(tree):
    """The payload shape a user's app declares (PAYLOAD = "numeric" or "json"); "json" by default,
    as upstream's apps send any JSON value."""
    for s in tree.body:
        if isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PAYLOAD" for t in s.targets):
            try:
                return ast.literal_eval(s.value)
            except ValueError:
                break
    return "json"


def payload_shape(spec):
    """What the nodes of a run accept as FL payloads: the app's declared shape."""
    if spec.user_app is not None:
        return spec.user_app.payload
    if not is_builtin(spec.app):  # a run of no fl-hil app (a Flower lab's processes)
        return "numeric"
    module = __import__("flhil.apps." + spec.app, fromlist=["PAYLOAD"])
    return getattr(module, "PAYLOAD", "numeric")


def declared_args(tree):
    for s in tree.body:
        if isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ARGS" for t in s.targets):
            try:
                value = ast.literal_eval(s.value)
            except ValueError:
                return None
            return dict(value) if isinstance(value, dict) else None
    return None


def _shallow_walk(nodes):
    """Nodes of a block, not descending into functions, lambdas or classes."""
    todo = list(nodes)
    while todo:
        n = todo.pop()
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(n))


def _dotted(node, left, right):
    return (isinstance(node, ast.Attribute) and node.attr == right and isinstance(node.value, ast.Name)
            and node.value.id == left)


def _assigned_names(body):
    names = set()
    for n in _shallow_walk(body):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in n.names if a.name != "*")
    return sorted(names)


def script_source(text, tree, path):
    """The script with `__flhil_main__` in place of its `__main__` block (see the module doc)."""
    guards = [s for s in tree.body if _is_main_guard(s)]
    if len(guards) != 1:
        raise AppError(f"{path}: expected one `if __name__ == \"__main__\":` block, found {len(guards)}")
    guard = guards[0]
    if guard.orelse:
        raise AppError(f"{path}:{guard.lineno}: the `__main__` block has an else branch, which runs on import")
    for s in tree.body:
        if s is not guard and any(isinstance(n, ast.Call) and _dotted(n.func, "asyncio", "run")
                                  for n in _shallow_walk([s])):
            raise AppError(f"{path}:{s.lineno}: asyncio.run outside the `__main__` block runs on import; "
                           "put it under `if __name__ == \"__main__\":`")
    lines = text.splitlines(keepends=True)
    edits = []  # (line index, col start, col end, replacement); one line's edits applied right to left

    def span(node, replacement):
        if node.lineno != node.end_lineno:
            raise AppError(f"{path}:{node.lineno}: cannot adapt an expression split over lines")
        edits.append((node.lineno - 1, node.col_offset, node.end_col_offset, replacement))

    for n in ast.walk(tree):
        if _dotted(n, "sys", "argv"):
            span(n, "__flhil_argv__")
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "input":
            span(n.func, "__flhil_input__")
    for n in _shallow_walk(guard.body):
        if isinstance(n, ast.Call) and _dotted(n.func, "asyncio", "run"):
            span(n.func, "__flhil_keep__(await ")  # what the coroutine returns is the node's result
            edits.append((n.end_lineno - 1, n.end_col_offset, n.end_col_offset, ")"))
        elif isinstance(n, ast.Call) and _dotted(n.func, "time", "sleep"):
            span(n.func, "await __flhil_asyncio.sleep")
    # the guard line itself: `if __name__ == "__main__":` -> `async def __flhil_main__():`
    head = lines[guard.lineno - 1]
    colon = head.index(":", guard.test.end_col_offset)
    edits.append((guard.lineno - 1, guard.col_offset, colon, "async def __flhil_main__()"))
    for li, a, b, rep in sorted(edits, key=lambda e: (e[0], -e[1])):
        lines[li] = lines[li][:a] + rep + lines[li][b:]
    names = _assigned_names(guard.body)
    if names:  # the block's names stay the module's globals, as they were at module level
        first = guard.body[0]
        indent = " " * first.col_offset
        lines.insert(first.lineno - 1, indent + "global " + ", ".join(names) + "\n")
    out = "".join(lines)
    if not out.endswith("\n"):
        out += "\n"
    return out + FOOTER


def _local_imports(tree, folder):
    """Sibling modules and packages of `folder` that the code imports."""
    found = set()
    for n in ast.walk(tree):
        mods = []
        if isinstance(n, ast.Import):
            mods = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            mods = [n.module]
        elif isinstance(n, ast.ImportFrom) and n.level == 1:
            mods = [n.module] if n.module else [a.name for a in n.names]
        for m in mods:
            top = m.split(".")[0]
            if (folder / (top + ".py")).is_file() or (folder / top / "__init__.py").is_file():
                found.add(top)
    return found


def _bundle(main, folder):
    """{relative path: source path} of the app and every local module it needs, transitively."""
    files = {main.name: main}
    todo = [main]
    seen = {main.stem}
    while todo:
        path = todo.pop()
        _, tree = _read(path)
        for top in _local_imports(tree, folder) - seen:
            seen.add(top)
            single = folder / (top + ".py")
            if single.is_file():
                files[single.name] = single
                todo.append(single)
            else:
                for f in sorted((folder / top).rglob("*.py")):
                    if "__pycache__" not in f.parts:
                        files[f.relative_to(folder).as_posix()] = f
                        todo.append(f)
    return files


def _cache_root():
    return Path(os.environ.get("FLHIL_CACHE", Path.home() / ".cache" / "flhil")) / "apps"


def stage(source, check=True, mpy_cross="mpy-cross"):
    """Stage a user's app file (see the module doc); returns a UserApp. Cached by content."""
    main = Path(source).resolve()
    text, tree = _read(main)
    shape = shape_of(tree)
    if shape is None:
        raise AppError(f"{main}: an app defines `async def run(node, args)` or is an MPT-FLA script "
                       "with an `if __name__ == \"__main__\":` block; this file has neither")
    files = _bundle(main, main.parent)
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + Path(files[rel]).read_bytes() + b"\0")
    folder = _cache_root() / (main.stem + "-" + digest.hexdigest()[:16])
    app = UserApp(str(main), main.stem, str(folder), shape, declared_args(tree) if shape == "run" else None,
                  declared_payload(tree), sorted(files))
    if (folder / ".staged").is_file():
        return app
    tmp = Path(str(folder) + ".tmp%d" % os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, src in files.items():
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src == main and shape == "script":
            dest.write_text(script_source(text, tree, str(main)))
        else:
            shutil.copyfile(src, dest)
    if check:
        for rel, src in files.items():
            _check_compiles(tmp / rel, src, mpy_cross)
    (tmp / ".staged").write_text(str(main) + "\n")
    try:
        tmp.rename(folder)
    except OSError:  # staged meanwhile by another process: the same content
        shutil.rmtree(tmp, ignore_errors=True)
    return app


def _check_compiles(staged, original, mpy_cross):
    """mpy-cross on a staged file; a MicroPython compile error names the user's file and line."""
    exe = find_tool(mpy_cross)
    if exe is None:
        return  # boards cannot be deployed without it; the deploy step says so
    out = staged.with_suffix(".check.mpy")
    try:
        proc = subprocess.run([exe, "-o", str(out), str(staged)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise AppError(f"mpy-cross failed on {original}: {e}") from None
    finally:
        if out.exists():
            out.unlink()
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().replace(str(staged), str(original))
        raise AppError(f"MicroPython cannot compile {original}:\n{message}")


def load_instance(folder, module_name, key):
    """A fresh module object of a staged app (in-process nodes each get their own globals, as
    each has its own interpreter on a board or a PC)."""
    import importlib.util
    import sys
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("%s__flhil_%s" % (module_name, key),
                                                  os.path.join(folder, module_name + ".py"))
    if spec is None:
        raise AppError(f"cannot load {module_name} from {folder}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_reference(ref):
    """(file, function) of an oracle reference: FILE.py:FUNCTION, or FILE.json with no function."""
    if ref.endswith(".json") or ":" not in ref:
        return ref, ""
    file, _, func = ref.rpartition(":")
    return file, func


def reference_values(ref, nodes, args):
    """The final value of each node from a user's reference: FILE.py:FUNCTION called with
    (nodes, args), or FILE.json holding a list (or {"final": [...]}). AppError if unusable."""
    import json
    file, func = split_reference(ref)
    if file.endswith(".json"):
        try:
            with open(file) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise AppError(f"oracle file {file}: {e}") from None
        values = data.get("final") if isinstance(data, dict) else data
    else:
        import importlib.util
        spec = importlib.util.spec_from_file_location("flhil_reference_" + Path(file).stem, file)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            values = getattr(module, func)(nodes, dict(args))
        except Exception as e:  # noqa: BLE001 - the user's code: say whose it is
            raise AppError(f"oracle {ref}: {type(e).__name__}: {e}") from None
    if not isinstance(values, (list, tuple)) or len(values) != nodes:
        raise AppError(f"oracle {ref}: expected a list of {nodes} final values, got {values!r:.80}")
    return list(values)
