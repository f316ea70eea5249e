"""Exceptions of the host harness. Everything the harness raises on purpose derives from HarnessError."""


class HarnessError(Exception):
    """Base of the harness's own errors."""


class ConfigError(HarnessError):
    """A lab file, scenario or fault plan that does not validate.

    `path` is the file (None for data built in code), `where` the key path such as
    `faults.links[1].loss` ("" for the whole file), `line` the line of that key when it could be
    found, and `why` what was expected and what was found.
    """

    def __init__(self, path, where, why, line=None):
        self.path = None if path is None else str(path)
        self.where = where or ""
        self.why = why
        self.line = line
        super().__init__(self._message())

    def _message(self):
        head = [] if self.path is None else [self.path]
        if self.where:
            head.append(self.where if self.line is None else f"{self.where} (line {self.line})")
        elif self.line is not None:
            head.append(f"line {self.line}")
        return ": ".join(head + [self.why])

    def __reduce__(self):  # keep it picklable (multiprocessing, pytest-xdist)
        return (type(self), (self.path, self.where, self.why, self.line))


class BoardError(HarnessError):
    """A board (serial, emulated or PC node) failed: `board` names it, `why` says what happened."""

    def __init__(self, board, why):
        self.board = board
        self.why = why
        super().__init__(f"{board}: {why}")

    def __reduce__(self):
        return (type(self), (self.board, self.why))
