"""Adapters of :class:`~ignite_speed.handlers.Pruning` to hyperparameter search engines. Each engine is an
optional extra, imported only by its own module (``import ignite_speed.search`` loads neither):

* :mod:`ignite_speed.search.optuna_trial`: :class:`~ignite_speed.search.optuna_trial.OptunaPruning` (a
  ``Trial``), :func:`~ignite_speed.search.optuna_trial.continue_or_ask` (the same trial after a relaunch);
* :mod:`ignite_speed.search.ray_tune`: :class:`~ignite_speed.search.ray_tune.RayTunePruning` (a report with the
  checkpoint at every validation run; a paused trial resumes exactly).
"""

from __future__ import annotations

__all__: list[str] = []
