"""Boards: the Board interface and its serial and emulated implementations."""

from flhil.harness.lab.boards.base import Board

__all__ = ["Board", "SerialBoard", "EmulatedBoard", "EmulatedRack", "start_emulated"]


def __getattr__(name):  # lazy: importing the interface must not pull in pyserial or threads
    if name == "SerialBoard":
        from flhil.harness.lab.boards.serial_board import SerialBoard
        return SerialBoard
    if name in ("EmulatedBoard", "EmulatedRack", "start_emulated"):
        from flhil.harness.lab.boards import emulated
        return getattr(emulated, name)
    raise AttributeError(name)
