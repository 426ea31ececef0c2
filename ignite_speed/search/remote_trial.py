"""The launching process's Optuna trials, served to the processes it starts.

A study with an in-memory storage lives in one process. When that process starts the training processes
(``idist.Parallel(nproc_per_node=2)``, ``torch.multiprocessing.spawn``, any ``multiprocessing`` spawn or
forkserver start) with the trial as an argument, the trial is pickled by ``ForkingPickler``: with
:mod:`ignite_speed.search.optuna_trial` imported, a trial of an in-memory storage pickles as a
:class:`RemoteTrial` that calls the launcher's trial, which a :class:`TrialHost` (one per process, started at the
first such trial) serves over a local ``multiprocessing.connection`` socket. A trial of a journal or RDB storage
pickles as before (every process reaches that storage), and plain ``pickle.dumps`` is unchanged.

The host: an ``AF_UNIX`` socket (a loopback TCP one where there is none) in ``multiprocessing``'s private
temporary directory, a random 32-byte key that a client proves it holds, a daemon thread that accepts, and a
daemon thread per connection that does the key handshake and then answers requests ``(key, op, name, args,
kwargs)`` with ``("ok", result)`` or ``("err", exception)`` (an exception that does not pickle becomes a
``RuntimeError`` with its repr). A client that fails the handshake or goes away ends its own thread only.
"""

from __future__ import annotations

import functools
import os
import pickle
import socket
import threading
from multiprocessing.connection import (
    Client,
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
)
from multiprocessing.reduction import ForkingPickler
from typing import Any

__all__ = ["RemoteTrial", "TrialHost", "serve"]

_FAMILY = "AF_UNIX" if hasattr(socket, "AF_UNIX") else "AF_INET"
_REFUSED = ("study",)  # a copy of the launcher's study would be misleading: its storage is the launcher's


class TrialHost:
    """Serves this process's trials to the processes it starts (see the module's docstring); :func:`serve`
    makes the one host of a process."""

    def __init__(self) -> None:
        self.authkey = os.urandom(32)
        # no authkey here: the handshake runs in each connection's thread, so a client that stalls in it
        # blocks nobody else
        self._listener = Listener(family=_FAMILY)
        self.address: Any = self._listener.address
        # key -> the trial, kept for the process's life: the host cannot see when the processes that use it end
        # (a trial is a few hundred bytes beside the study's own record of it)
        self._trials: dict[int, Any] = {}
        self._keys: dict[int, int] = {}  # id(trial) -> key
        # the registry, and one call into the trials at a time (reentrant: a call that pickles a trial serves it)
        self._lock = threading.RLock()
        threading.Thread(target=self._accept, name="ignite-speed-trial-host", daemon=True).start()

    def serve(self, trial: Any) -> RemoteTrial:
        """A :class:`RemoteTrial` that calls ``trial`` in this process (the same key for the same trial)."""
        with self._lock:
            key = self._keys.get(id(trial))
            if key is None or self._trials[key] is not trial:
                key = len(self._trials)
                self._trials[key], self._keys[id(trial)] = trial, key
        return RemoteTrial(self.address, self.authkey, key, int(trial.number))

    def _accept(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
            except OSError:  # (the listener was closed)
                return
            threading.Thread(target=self._answer_all, args=(conn,), name="ignite-speed-trial-conn", daemon=True).start()

    def _answer_all(self, conn: Connection) -> None:
        try:
            deliver_challenge(conn, self.authkey)
            answer_challenge(conn, self.authkey)
            while True:
                request = conn.recv()
                conn.send_bytes(_reply(self._answer(request)))
        except Exception:  # (a wrong key, a client gone, a request that does not unpickle here)
            pass  # this connection ends, the host goes on
        finally:
            conn.close()

    def _answer(self, request: Any) -> tuple[str, Any]:
        try:
            key, op, name, args, kwargs = request
            if op not in _OPS:
                raise ValueError(f"unknown request {op!r}; accepted: {sorted(_OPS)}")
            if not isinstance(name, str) or name.startswith("_") or name in _REFUSED:
                raise AttributeError(f"RemoteTrial: {name!r} is not served")
            with self._lock:
                trial = self._trials.get(key)
                if trial is None:
                    raise KeyError(f"no trial {key!r} is served by process {os.getpid()}")
                return "ok", _OPS[op](trial, name, args, kwargs)
        except Exception as exc:  # the caller gets it: this thread goes on
            return "err", exc


def _get(trial: Any, name: str, args: Any, kwargs: Any) -> tuple[bool, Any]:
    """``(True, None)`` for a method (the client calls it with ``call``), else ``(False, value)``."""
    value = getattr(trial, name)
    return (True, None) if callable(value) else (False, value)


def _call(trial: Any, name: str, args: Any, kwargs: Any) -> Any:
    return getattr(trial, name)(*args, **kwargs)


def _stored_steps(trial: Any, name: str, args: Any, kwargs: Any) -> set[int]:
    return stored_steps(trial)


def stored_steps(trial: Any) -> set[int]:
    """The steps of an Optuna ``trial`` already in its storage (not the trial's cache: a relaunched job's)."""
    return set(trial.storage.get_trial(trial._trial_id).intermediate_values)  # (no public accessor)


_OPS = {"get": _get, "call": _call, "stored_steps": _stored_steps}


def _reply(reply: tuple[str, Any]) -> bytes:
    try:
        return bytes(ForkingPickler.dumps(reply))
    except Exception as exc:
        status, value = reply
        what = f"the result {value!r} does not pickle ({exc!r})" if status == "ok" else repr(value)
        return bytes(ForkingPickler.dumps(("err", RuntimeError(what))))


_HOST: TrialHost | None = None
_HOST_LOCK = threading.Lock()


def serve(trial: Any) -> RemoteTrial:
    """A :class:`RemoteTrial` for ``trial``, served by this process's host (started at the first call)."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = TrialHost()
        host = _HOST
    return host.serve(trial)


# ---------------------------------------------------------------------------------------------- the client side
_CONNECTIONS: dict[tuple[Any, bytes], Connection] = {}  # one per host, per process
_CONNECTIONS_PID = os.getpid()
_CONNECTIONS_LOCK = threading.Lock()  # held for a whole request: one request at a time on a connection


class RemoteTrial:
    """An Optuna trial of another process of this machine (the launching one), called there.

    It pickles as its address, key and number, so it passes on to further processes, and connects at its first
    call (one connection per process). ``report``, ``should_prune``, ``set_user_attr``, ``params``,
    ``user_attrs`` and ``number`` are its own; every other public name of the trial (``suggest_float``,
    ``distributions``...) is the launcher's, asked for at each use. ``study`` is refused: a copy of the
    launcher's study would be misleading.
    """

    def __init__(self, address: Any, authkey: bytes, key: int, number: int) -> None:
        self._address, self._authkey, self._key, self._number = address, authkey, key, number

    def __reduce__(self) -> tuple[Any, ...]:
        return RemoteTrial, (self._address, self._authkey, self._key, self._number)

    def __repr__(self) -> str:
        return f"RemoteTrial(number={self._number}, served at {self._address!r})"

    @property
    def number(self) -> int:
        return self._number

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._request("get", "params")[1])

    @property
    def user_attrs(self) -> dict[str, Any]:
        return dict(self._request("get", "user_attrs")[1])

    def report(self, value: float, step: int) -> None:
        self._request("call", "report", (value, step))

    def should_prune(self) -> bool:
        return bool(self._request("call", "should_prune"))

    def set_user_attr(self, key: str, value: Any) -> None:
        self._request("call", "set_user_attr", (key, value))

    def stored_steps(self) -> set[int]:
        """The steps already in the launcher's storage for this trial."""
        return set(self._request("stored_steps", ""))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # (pickle's and copy's probes, hasattr: no round trip)
            raise AttributeError(name)
        if name in _REFUSED:
            raise AttributeError(
                f"RemoteTrial.{name}: this trial is served by the launching process, whose {name} cannot be "
                f"copied here (a copy would not see its storage); use the trial's own methods, or read the "
                f"study in the launching process"
            )
        is_method, value = self._request("get", name)
        if is_method:
            return functools.partial(_call_with_kwargs, self, name)
        return value

    def _request(self, op: str, name: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        with _CONNECTIONS_LOCK:
            conn = _connection(self._address, self._authkey, self._number)
            try:
                conn.send((self._key, op, name, args, kwargs or {}))
                data = conn.recv_bytes()
            except (EOFError, OSError) as exc:
                _CONNECTIONS.pop((self._address, self._authkey), None)
                raise RuntimeError(
                    f"RemoteTrial(number={self._number}): the launching process that serves this trial at "
                    f"{self._address!r} is gone ({exc!r})"
                ) from exc
        try:
            status, value = pickle.loads(data)
        except Exception as exc:
            raise RuntimeError(
                f"RemoteTrial(number={self._number}): the launching process's answer to {op} {name!r} does not "
                f"unpickle here ({exc!r})"
            ) from exc
        if status == "ok":
            return value
        if hasattr(value, "add_note"):  # (Python 3.11+)
            value.add_note(f"(raised by trial {self._number} in its launching process, for {op} {name!r})")
        raise value


def _call_with_kwargs(trial: RemoteTrial, name: str, *args: Any, **kwargs: Any) -> Any:
    return trial._request("call", name, args, kwargs)


def _connection(address: Any, authkey: bytes, number: int) -> Connection:
    """This process's connection to the host at ``address`` (a forked child opens its own)."""
    global _CONNECTIONS_PID
    if _CONNECTIONS_PID != os.getpid():
        _CONNECTIONS.clear()  # (the parent's: a forked child must not talk on them)
        _CONNECTIONS_PID = os.getpid()
    conn = _CONNECTIONS.get((address, authkey))
    if conn is None:
        try:
            conn = Client(address, family=_FAMILY, authkey=authkey)
        except (OSError, EOFError) as exc:
            raise RuntimeError(
                f"RemoteTrial(number={number}): cannot reach the launching process that serves this trial at "
                f"{address!r} ({exc!r}); it serves its trials while it runs"
            ) from exc
        _CONNECTIONS[(address, authkey)] = conn
    return conn
