"""Where in the user's code something happened: for warnings that name the user's handler or call."""

from __future__ import annotations

__all__ = ["caller_outside_the_frameworks", "warn_at_users_line"]


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


def warn_at_users_line(
    message: str, category: type[Warning] = UserWarning, where: tuple[str, str, int] | None = None
) -> None:
    """Warn at the user's line that led here (their ``trainer.run(...)``, their handler), not at ignite-speed's
    own: the call comes from several depths. ``where``: a :func:`caller_outside_the_frameworks` the caller took
    already (to name it in ``message``); with none on the stack, at the caller's caller."""
    import warnings

    where = where or caller_outside_the_frameworks()
    if where is None:
        warnings.warn(message, category, stacklevel=3)
    else:
        warnings.warn_explicit(message, category, where[1], where[2])
