"""autoresume: a trainer whose first run starts in a fresh process continues from the newest complete checkpoint
of its Checkpoint (real files): exactly as an uninterrupted run, falling back past an unreadable file, from
scratch without one, and refusing a checkpoint it cannot continue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from torch.utils.data import DataLoader, TensorDataset

from ignite_speed import AutoResume, SpeedConfig, StopReason, attach_speedups
from ignite_speed.handlers.autoresume import checkpoint_files
from tests.helpers import mse_step

BATCHES = 6  # per epoch
EPOCHS = 3


def _build(
    ckpt_dir: Path, *, crash_at: int = 0, autoresume: bool = True, to_save: tuple[str, ...] = (), **cfg: Any
) -> dict[str, Any]:
    """A shuffled Linear regression with a Checkpoint every 4 iterations; raises KeyboardInterrupt after the
    iteration ``crash_at`` (a crash: no save at the stop)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(BATCHES * 4, 4, generator=torch.Generator().manual_seed(1))
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4, shuffle=True)
    trainer = Engine(mse_step(model, opt))
    sp = attach_speedups(trainer, cfg={"max_epochs": EPOCHS, **({"autoresume": True} if autoresume else {}), **cfg})
    objects = {"trainer": trainer, "model": model, "optimizer": opt, "speedups": sp}
    saved = {k: objects[k] for k in (to_save or objects)}
    ckpt = Checkpoint(saved, DiskSaver(str(ckpt_dir), require_empty=False), n_saved=None)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=4), ckpt)

    def crash(engine: Engine) -> None:
        raise KeyboardInterrupt

    if crash_at:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=crash_at), crash)
    return {"trainer": trainer, "model": model, "sp": sp, "data": data, "ckpt": ckpt}


def _crashed(ckpt_dir: Path, at: int = 10) -> None:
    run = _build(ckpt_dir, crash_at=at, autoresume=False)
    with pytest.raises(KeyboardInterrupt):
        run["trainer"].run(run["data"])
    assert run["trainer"].state.iteration == at


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = _build(tmp_path_factory.mktemp("autoresume_reference"), autoresume=False)
    run["trainer"].run(run["data"])
    assert run["sp"].stop_reason is StopReason.MAX_EPOCHS and run["trainer"].state.iteration == BATCHES * EPOCHS
    return {"weight": run["model"].weight.detach().clone(), "bias": run["model"].bias.detach().clone()}


def _assert_ends_as(run: dict[str, Any], reference: dict[str, Any]) -> None:
    assert run["trainer"].state.iteration == BATCHES * EPOCHS == 18
    assert run["trainer"].state.epoch == EPOCHS
    assert run["sp"].stop_reason is StopReason.MAX_EPOCHS
    assert torch.equal(run["model"].weight, reference["weight"])
    assert torch.equal(run["model"].bias, reference["bias"])


def test_a_new_process_resumes_from_the_newest_checkpoint_exactly(tmp_path, reference, caplog):
    _crashed(tmp_path)
    assert [step for step, _, _ in checkpoint_files(_build(tmp_path)["ckpt"])] == [8, 4]
    run = _build(tmp_path)
    starts: list[int] = []
    run["trainer"].add_event_handler(Events.STARTED, lambda e: starts.append(e.state.iteration))
    with caplog.at_level("INFO", logger="ignite_speed"):
        run["trainer"].run(run["data"])
    assert run["sp"].autoresume.resumed_from == str(tmp_path / "checkpoint_8.pt")
    assert run["sp"].autoresume.skipped == []
    assert starts == [8]
    assert f"autoresume: resuming from {tmp_path / 'checkpoint_8.pt'} (iteration 8, epoch 1)" in caplog.text
    _assert_ends_as(run, reference)


def test_a_truncated_newest_file_falls_back_to_the_previous_one_with_a_warning(tmp_path, reference, caplog):
    _crashed(tmp_path)
    newest = tmp_path / "checkpoint_8.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    run = _build(tmp_path)
    with caplog.at_level("INFO", logger="ignite_speed"):
        run["trainer"].run(run["data"])
    assert run["sp"].autoresume.resumed_from == str(tmp_path / "checkpoint_4.pt")
    assert run["sp"].autoresume.skipped == [str(newest)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(newest) in w and str(tmp_path / "checkpoint_4.pt") in w for w in warnings), warnings
    _assert_ends_as(run, reference)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_a_newest_file_cut_to_a_few_bytes_falls_back_to_the_previous_one(tmp_path, reference, caplog, size):
    # torch.load(weights_only=True) raises UnpicklingError for these (worded as a weights_only refusal)
    _crashed(tmp_path)
    newest = tmp_path / "checkpoint_8.pt"
    newest.write_bytes(newest.read_bytes()[:size])
    run = _build(tmp_path)
    with caplog.at_level("INFO", logger="ignite_speed"):
        run["trainer"].run(run["data"])
    assert run["sp"].autoresume.resumed_from == str(tmp_path / "checkpoint_4.pt")
    assert run["sp"].autoresume.skipped == [str(newest)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"cannot read {newest} (UnpicklingError" in w for w in warnings), warnings
    _assert_ends_as(run, reference)


class _Unlisted:  # an object that torch.load(weights_only=True) refuses
    pass


def test_a_complete_file_with_objects_weights_only_refuses_is_not_skipped(tmp_path):
    _crashed(tmp_path)
    newest = tmp_path / "checkpoint_8.pt"
    torch.save({**torch.load(newest, weights_only=True), "extra": _Unlisted()}, newest)
    run = _build(tmp_path)
    with pytest.raises(Exception, match="AutoResume\\(weights_only=False\\)") as info:
        run["trainer"].run(run["data"])
    assert str(newest) in str(info.value)


def test_an_empty_folder_starts_from_scratch_with_an_info_line(tmp_path, reference, caplog):
    run = _build(tmp_path)
    with caplog.at_level("INFO", logger="ignite_speed"):
        run["trainer"].run(run["data"])
    assert f"autoresume: no checkpoint in {tmp_path}; training starts from scratch" in caplog.text
    assert run["sp"].autoresume.resumed_from is None
    _assert_ends_as(run, reference)


def test_the_newest_by_global_step_not_by_name_order(tmp_path):
    _crashed(tmp_path, at=14)  # checkpoint_4, _8, _12: "12" sorts before "4" and "8" as text
    assert [step for step, _, _ in checkpoint_files(_build(tmp_path)["ckpt"])] == [12, 8, 4]
    run = _build(tmp_path, max_epochs=EPOCHS)
    run["trainer"].run(run["data"])
    assert run["sp"].autoresume.resumed_from == str(tmp_path / "checkpoint_12.pt")


def test_a_checkpoint_without_the_loop_state_is_refused(tmp_path):
    run = _build(tmp_path, to_save=("trainer", "model", "optimizer"))
    with pytest.raises(
        RuntimeError,
        match=r"autoresume: no Checkpoint of the trainer saves both the trainer and "
        r"ignite-speed's state .*'speedups': speedups",
    ):
        run["trainer"].run(run["data"])


def test_a_file_without_the_loop_state_is_refused_naming_it(tmp_path):
    crashed = _build(tmp_path, crash_at=10, autoresume=False, to_save=("trainer", "model", "optimizer"))
    with pytest.raises(KeyboardInterrupt):
        crashed["trainer"].run(crashed["data"])
    run = _build(tmp_path)  # the same file names: its Checkpoint saves the speedups too
    with pytest.raises(
        ValueError,
        match=rf"autoresume: {tmp_path / 'checkpoint_8.pt'} has no 'speedups' of the "
        rf"Checkpoint's to_save .* move it out of",
    ):
        run["trainer"].run(run["data"])
    assert run["trainer"].state.iteration == 0


def test_a_checkpoint_past_the_new_max_epochs_is_refused_naming_the_file(tmp_path):
    _crashed(tmp_path, at=17)  # checkpoint_16: 2 epochs done, inside the third
    run = _build(tmp_path, max_epochs=1)
    with pytest.raises(
        ValueError,
        match=rf"the checkpoint \({tmp_path / 'checkpoint_16.pt'}\) has 2 epochs done, "
        rf"but max_epochs=1: resume with max_epochs >= 2 .*autoresume=False",
    ):
        run["trainer"].run(run["data"])


def test_only_the_first_run_of_a_fresh_trainer_resumes(tmp_path):
    _crashed(tmp_path)
    run = _build(tmp_path)
    Checkpoint.load_objects(to_load=run["ckpt"].to_save, checkpoint=torch.load(tmp_path / "checkpoint_4.pt"))
    run["trainer"].run(run["data"])  # loaded by hand already: autoresume leaves it
    assert run["sp"].autoresume.resumed_from is None and run["trainer"].state.iteration == 18


def test_the_flag_takes_a_bool_only():
    assert SpeedConfig(autoresume=True).autoresume is True and SpeedConfig().autoresume is False
    for bad in (1, "yes", None):
        with pytest.raises(
            TypeError,
            match=r"autoresume=.* has type .*; accepted: True \(continue from the newest "
            r"checkpoint",
        ):
            SpeedConfig(autoresume=bad)
    trainer = Engine(lambda e, b: 0.0)
    assert attach_speedups(trainer, cfg={"max_epochs": 1}).autoresume is None
    assert isinstance(attach_speedups(Engine(lambda e, b: 0.0), autoresume=True).autoresume, AutoResume)


def test_a_file_of_another_model_is_refused_naming_the_file_and_the_object(tmp_path):
    _crashed(tmp_path)
    run = _build(tmp_path)
    other = torch.nn.Linear(4, 2)  # another model under the same name
    run["ckpt"].to_save["model"] = other
    path = tmp_path / "checkpoint_8.pt"
    with pytest.raises(RuntimeError) as caught:
        run["trainer"].run(run["data"])
    message = str(caught.value)
    assert message.startswith(
        f"autoresume: {path} does not fit this run: its 'model' cannot be loaded into the "
        f"Checkpoint's 'model' (Linear): RuntimeError: Error(s) in loading state_dict for Linear: "
        f"size mismatch for weight"
    )
    assert message.endswith(
        f"The file was written by another setup (another model, optimizer or ignite-speed "
        f"version?); move it out of {tmp_path} to start from scratch, or set autoresume=False"
    )
    assert "\n" not in message and caught.value.__cause__ is None and caught.value.__suppress_context__


def test_ckpt_path_last_resumes_as_autoresume(tmp_path, reference):
    _crashed(tmp_path)
    run = _build(tmp_path, autoresume=False, ckpt_path="last")  # Lightning: trainer.fit(model, ckpt_path="last")
    run["trainer"].run(run["data"])
    assert run["sp"].autoresume.resumed_from == str(tmp_path / "checkpoint_8.pt")
    _assert_ends_as(run, reference)
