# `os` of an emulated board: the flash directory is "/", as on a Pico, so absolute paths used by
# deploy tools (mpremote `fs cp :/x`) stay inside it. Installed as sys.modules["os"] by _flhil_boot.
import os as _os
import builtins as _builtins

_root = None  # the flash directory on the host, set by install()
_open = _builtins.open


def _real(path):
    if not isinstance(path, str) or not path.startswith("/"):
        return path
    parts = []
    for p in path.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p and p != ".":
            parts.append(p)
    return _root + ("/" + "/".join(parts) if parts else "")


def getcwd():
    cwd = _os.getcwd()
    if cwd == _root:
        return "/"
    if cwd.startswith(_root + "/"):
        return cwd[len(_root):]
    return cwd


def chdir(p):
    _os.chdir(_real(p))


def stat(p):
    # "" is the current folder on a board's VFS (mpremote's `fs cp x.py :` asks for it)
    return _os.stat(_real(p) if p else ".")


def statvfs(p):
    return _os.statvfs(_real(p))


def listdir(p=None):
    return _os.listdir() if p is None else _os.listdir(_real(p))


def ilistdir(p="."):
    # (name, type, inode, size), as a board's VFS gives them: the unix port leaves out the size
    real = _real(p) if p else "."
    for entry in _os.ilistdir(real):
        if len(entry) > 3:
            yield entry
            continue
        size = 0
        if entry[1] != 0x4000:
            try:
                size = _os.stat(real + "/" + entry[0])[6]
            except OSError:
                pass
        yield (entry[0], entry[1], entry[2], size)


def mkdir(p):
    _os.mkdir(_real(p))


def rmdir(p):
    _os.rmdir(_real(p))


def remove(p):
    _os.remove(_real(p))


unlink = remove


def rename(a, b):
    _os.rename(_real(a), _real(b))


def sync():
    pass


class _Uname(tuple):
    sysname = property(lambda s: s[0])
    nodename = property(lambda s: s[1])
    release = property(lambda s: s[2])
    version = property(lambda s: s[3])
    machine = property(lambda s: s[4])


def uname():
    import sys
    v = ".".join(str(x) for x in sys.implementation.version[:3])
    return _Uname(("rp2", "rp2", v, "v" + v + " (emulated)", "Raspberry Pi Pico W with RP2040"))


def _flash_open(file, *args, **kw):
    return _open(_real(file), *args, **kw)


def install(root):
    global _root
    _root = root.rstrip("/")
    g = globals()
    for name in dir(_os):
        if name not in g and not name.startswith("__"):
            g[name] = getattr(_os, name)
    _builtins.open = _flash_open
    import sys
    sys.modules["os"] = sys.modules["_flhil_os"]
