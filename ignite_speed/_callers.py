"""Where in the user's code something happened: for warnings that name the user's handler or call."""

from __future__ import annotations

__all__ = ["caller_outside_the_frameworks"]


def caller_outside_the_frameworks() -> tuple[str, str, int] | None:
    """(name, file, line) of the innermost function on the stack outside Ignite, ignite-speed, torch and the
    standard library: the app's handler or call that led here."""
    import os
    import sys
    import sysconfig

    import ignite

    skip = (os.path.dirname(os.path.abspath(ignite.__file__)), os.path.dirname(os.path.abspath(__file__)))
    paths = sysconfig.get_paths()
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        in_stdlib = filename.startswith(paths["stdlib"]) and not filename.startswith(paths["purelib"])
        if not filename.startswith(skip) and not in_stdlib and os.sep + "torch" + os.sep not in filename:
            name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
            return f"{name} ({os.path.basename(filename)}:{frame.f_lineno})", filename, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None
