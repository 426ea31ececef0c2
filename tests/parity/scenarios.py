"""Random loop-control scenarios, shared by the Lightning oracle and the ignite-speed runner.

A scenario is a plain dict: data sizes, Lightning 2.x Trainer flags, an optional EarlyStopping
config, and the scripted validation metric. Seeded, so both sides see the same cases.
"""

import math
import random

FLAG_KEYS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "overfit_batches",
    "fast_dev_run",
)


def _metric_seq(rng):
    kind = rng.choice(["down", "flat", "noisy", "nan", "up", "vshape"])
    n = 60
    if kind == "down":
        seq = [2.0 * (0.8**i) for i in range(n)]
    elif kind == "flat":
        seq = [1.0] * n
    elif kind == "noisy":
        seq = [1.0 + rng.choice([-0.3, -0.1, 0.0, 0.1, 0.2]) for _ in range(n)]
    elif kind == "up":
        seq = [0.5 + 0.7 * i for i in range(n)]
    elif kind == "vshape":
        k = rng.randint(1, 5)
        seq = [abs(i - k) * 0.5 + 0.25 for i in range(n)]
    else:
        seq = [2.0 * (0.8**i) for i in range(n)]
        seq[rng.randint(0, 6)] = math.nan
    return kind, [round(v, 6) if not math.isnan(v) else v for v in seq]


def _limit(rng, zero_ok=True):
    opts = [None, None, 1.0, 0.5, 0.3, 0.75, 1, 2, 3, 5, 50]
    if zero_ok:
        opts.append(0)
    return rng.choice(opts)


def make(seed):
    rng = random.Random(seed)
    sc = {"id": seed, "n_train": rng.randint(6, 13), "n_val": rng.randint(3, 6), "n_test": rng.randint(3, 6)}
    flags = {}
    flags["max_epochs"] = rng.choice([1, 2, 3, 4, 5, None])
    if rng.random() < 0.3:
        flags["max_steps"] = rng.choice([4, 7, 12, 20, 33])
    if rng.random() < 0.3:
        flags["min_epochs"] = rng.choice([1, 2, 3, 6])
    if rng.random() < 0.2:
        flags["min_steps"] = rng.choice([5, 11, 25])
    if flags["max_epochs"] is None and "max_steps" not in flags:
        flags["max_steps"] = rng.choice([10, 25, 40])
    for k, z in (("limit_train_batches", False), ("limit_val_batches", True), ("limit_test_batches", True)):
        v = _limit(rng, zero_ok=z)
        if v is not None:
            flags[k] = v
    r = rng.random()
    if r < 0.25:
        flags["val_check_interval"] = rng.choice([0.25, 0.5, 0.3, 1.0])
    elif r < 0.45:
        flags["val_check_interval"] = rng.choice([2, 3, 4])
    r = rng.random()
    if r < 0.2:
        flags["check_val_every_n_epoch"] = rng.choice([2, 3])
    elif r < 0.3 and isinstance(flags.get("val_check_interval"), int):
        flags["check_val_every_n_epoch"] = None
    if rng.random() < 0.12:
        flags["overfit_batches"] = rng.choice([1, 2, 0.5])
    if rng.random() < 0.1:
        flags["fast_dev_run"] = rng.choice([True, 2, 3])
    sc["flags"] = flags
    if rng.random() < 0.55:
        es = {"monitor": "val_loss", "mode": "min", "patience": rng.choice([0, 1, 2, 3])}
        if rng.random() < 0.3:
            es["min_delta"] = rng.choice([0.05, 0.1, 0.5])
        if rng.random() < 0.3:
            es["stopping_threshold"] = rng.choice([0.3, 0.6, 1.0])
        if rng.random() < 0.3:
            es["divergence_threshold"] = rng.choice([2.0, 3.0, 5.0])
        if rng.random() < 0.2:
            es["check_finite"] = False
        if rng.random() < 0.15:
            es["mode"] = "max"
        sc["early_stopping"] = es
    sc["metric_kind"], sc["metric_seq"] = _metric_seq(rng)
    return sc


def all_scenarios(start, count):
    return [make(s) for s in range(start, start + count)]


def deliberate_deviation(sc):
    """Why ignite-speed deliberately differs from Lightning on this scenario (None: it must match).

    Each reason is documented in docs/deviations.rst.
    """
    flags = sc["flags"]
    val_limit = flags.get("limit_val_batches")
    overridden = flags.get("overfit_batches") or flags.get("fast_dev_run")
    if isinstance(val_limit, float) and 0 < val_limit < 1 and int(sc["n_val"] * val_limit) == 0 and not overridden:
        # A fraction of the val loader that truncates to 0 batches is refused when attaching. Lightning only
        # raises once it first sets up the val loader, which never happens when no validation run is due
        # (e.g. check_val_every_n_epoch > max_epochs) and the sanity check is off.
        return "bad limit_val_batches refused up front"
    if sc.get("early_stopping") and val_limit == 0 and not overridden:
        # Early stopping on a validation metric while validation is disabled is refused when attaching.
        # Lightning raises only at the first early-stopping check, and never when the run ends before one.
        return "early stopping without validation refused up front"
    return None
