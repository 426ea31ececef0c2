"""batched_fetch: a DataLoader over a TensorDataset read a batch at a time gives the same batches, and the
same training, as the loader read a sample at a time."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events, create_supervised_evaluator
from ignite.handlers import Checkpoint
from ignite.metrics import Loss
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    Subset,
    TensorDataset,
    random_split,
)

from ignite_speed import SpeedConfig, attach_speedups, create_trainer, with_batched_fetch
from ignite_speed.data.batched_fetch import TensorBatches, batched_fetch_refusal
from ignite_speed.distributed.data import find_sampler
from ignite_speed.handlers import ValidationSchedule
from ignite_speed.loop.resume import loader_generators


def _digits_like(n: int = 50, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g))


def _assert_same_batches(plain: DataLoader, fast: DataLoader, epochs: int = 2) -> None:
    for _ in range(epochs):
        a, b = list(plain), list(fast)
        assert len(a) == len(b) == len(plain) == len(fast)
        for batch_a, batch_b in zip(a, b):
            assert type(batch_a) is type(batch_b) is list
            for t_a, t_b in zip(batch_a, batch_b):
                assert t_a.dtype == t_b.dtype and t_a.shape == t_b.shape and t_a.is_contiguous() and t_b.is_contiguous()
                assert torch.equal(t_a, t_b)


@pytest.mark.parametrize("drop_last", [False, True])
def test_shuffled_loader_with_its_own_generator_gives_the_same_batches_and_draws(drop_last):
    data = _digits_like()
    plain = DataLoader(
        data, batch_size=8, shuffle=True, drop_last=drop_last, generator=torch.Generator().manual_seed(3)
    )
    twin = DataLoader(data, batch_size=8, shuffle=True, drop_last=drop_last, generator=torch.Generator().manual_seed(3))
    fast = with_batched_fetch(twin)
    assert isinstance(fast.dataset, TensorBatches) and fast is not twin
    assert fast.sampler is twin.sampler and fast.generator is twin.generator
    _assert_same_batches(plain, fast, epochs=3)
    # the shared generator was drawn from exactly as the plain loader's was
    assert torch.equal(plain.generator.get_state(), twin.generator.get_state())
    assert len(loader_generators(fast)) == len(loader_generators(twin))


def test_shuffled_loader_on_the_global_generator_draws_the_same():
    data = _digits_like()
    torch.manual_seed(11)
    expected = [list(DataLoader(data, batch_size=7, shuffle=True)) for _ in range(2)]
    after_plain = torch.random.get_rng_state()
    torch.manual_seed(11)
    fast = with_batched_fetch(DataLoader(data, batch_size=7, shuffle=True))
    got = [list(fast) for _ in range(2)]
    assert torch.equal(torch.random.get_rng_state(), after_plain)
    for epoch_a, epoch_b in zip(expected, got):
        assert all(torch.equal(a, b) for batch_a, batch_b in zip(epoch_a, epoch_b) for a, b in zip(batch_a, batch_b))


def test_subset_of_a_tensor_dataset_and_random_split():
    data = _digits_like(40)
    train, _ = random_split(data, [30, 10], generator=torch.Generator().manual_seed(0))
    for subset in (train, Subset(data, [5, 1, 9, 9, 0])):
        plain = DataLoader(subset, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
        fast = with_batched_fetch(
            DataLoader(subset, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
        )
        assert isinstance(fast.dataset, TensorBatches) and len(fast.dataset) == len(subset)
        assert all(torch.equal(a, b) for a, b in zip(fast.dataset[2], subset[2]))  # single samples still work
        _assert_same_batches(plain, fast)


def test_a_batch_sampler_of_the_users_own_is_kept():
    data = _digits_like(20)
    sampler = BatchSampler(RandomSampler(data, generator=torch.Generator().manual_seed(4)), 6, drop_last=False)
    plain = DataLoader(
        data,
        batch_sampler=BatchSampler(RandomSampler(data, generator=torch.Generator().manual_seed(4)), 6, drop_last=False),
    )
    fast = with_batched_fetch(DataLoader(data, batch_sampler=sampler))
    assert fast.batch_sampler is sampler
    _assert_same_batches(plain, fast)


def test_a_distributed_sampler_is_still_found_for_set_epoch():
    data = _digits_like(20)
    sampler = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=5)
    fast = with_batched_fetch(DataLoader(data, batch_size=3, sampler=sampler))
    assert find_sampler(fast) is sampler
    sampler.set_epoch(1)
    plain = DataLoader(
        data, batch_size=3, sampler=DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=5)
    )
    plain.sampler.set_epoch(1)
    _assert_same_batches(plain, fast, epochs=1)


class _Doubled(TensorDataset):
    def __getitem__(self, index):
        return tuple(2 * t[index] for t in self.tensors)


class _MyLoader(DataLoader):
    pass


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda d: DataLoader(d, batch_size=4, num_workers=2), "it reads with worker processes (num_workers=2)"),
        (lambda d: DataLoader(d, batch_size=4, collate_fn=lambda b: b), "it has a collate_fn of its own"),
        (lambda d: DataLoader(d, batch_size=None), "it has no batch sampler (batch_size=None)"),
        (
            lambda d: DataLoader(_Doubled(*d.tensors), batch_size=4),
            "its dataset is a _Doubled, not a TensorDataset (or a Subset of one)",
        ),
        (lambda d: _MyLoader(d, batch_size=4), "it is a _MyLoader, a DataLoader subclass"),
        (lambda d: [d[0], d[1]], "it is not a torch DataLoader"),
    ],
)
def test_other_loaders_come_back_unchanged_with_the_reason(make, why):
    loader = make(_digits_like(8))
    assert batched_fetch_refusal(loader) == why
    assert with_batched_fetch(loader) is loader


# ---------------------------------------------------------------------------------------------- in a training run
def _train(batched_fetch: bool, **flags):
    """A create_trainer + attach_speedups run on a shuffled TensorDataset; returns what it used and made."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    cfg = SpeedConfig(
        max_epochs=4,
        val_check_interval=0.5,
        batched_fetch=batched_fetch,
        early_stopping={"monitor": "val_loss", "patience": 2},
        **flags,
    )
    trainer = create_trainer(model, optimizer, loss_fn, cfg)
    evaluator = create_supervised_evaluator(model, metrics={"val_loss": Loss(loss_fn)})
    train = DataLoader(_digits_like(60), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2))
    val = DataLoader(_digits_like(24, seed=1), batch_size=8)
    val_losses = []
    evaluator.add_event_handler(Events.COMPLETED, lambda e: val_losses.append(e.state.metrics["val_loss"]))
    speedups = attach_speedups(trainer, evaluator, cfg, val_data=val)
    trainer.run(train)
    tester = Engine(lambda e, b: None)
    speedups.test(tester, val)
    return {
        "trainer": trainer,
        "evaluator": evaluator,
        "tester": tester,
        "train": train,
        "val": val,
        "model": model,
        "val_losses": val_losses,
        "speedups": speedups,
    }


def test_attach_speedups_trains_exactly_as_with_the_plain_loaders():
    fast, plain = _train(True), _train(False)
    assert isinstance(fast["trainer"].state.dataloader.dataset, TensorBatches)
    assert isinstance(fast["evaluator"].state.dataloader.dataset, TensorBatches)
    assert isinstance(fast["tester"].state.dataloader.dataset, TensorBatches)
    assert fast["trainer"].state.dataloader.sampler is fast["train"].sampler
    assert plain["trainer"].state.dataloader is plain["train"]
    assert plain["evaluator"].state.dataloader is plain["val"]
    assert fast["val_losses"] == plain["val_losses"] and len(fast["val_losses"]) == 5
    for run in (fast, plain):
        speedups = run["speedups"]
        assert (speedups.stop_reason.value, speedups.progress.val_runs, speedups.progress.total_batches) == (
            "early_stopping",
            5,
            20,
        )  # val every 4 of 8 batches; no new best at 16, 20
    for a, b in zip(fast["model"].state_dict().values(), plain["model"].state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(fast["train"].generator.get_state(), plain["train"].generator.get_state())


def test_overfit_batches_reads_the_sequential_copy_a_batch_at_a_time():
    with pytest.warns(UserWarning, match="turning off shuffling of the train loader"):
        run = _train(True, overfit_batches=2)
    loader = run["trainer"].state.dataloader
    assert isinstance(loader.dataset, TensorBatches) and not isinstance(loader.sampler, RandomSampler)
    assert run["trainer"].state.epoch_length == 2


def test_resume_from_a_checkpoint_mid_epoch_matches_the_uninterrupted_run(tmp_path):
    whole = _train(True)

    # the same run, stopped after 10 batches (epoch 2, batch 2 of 8) and resumed in a new process's objects
    class Stop(Exception):
        pass

    def interrupted():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(16, 3)
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = torch.nn.CrossEntropyLoss()
        cfg = SpeedConfig(max_epochs=4, val_check_interval=0.5, early_stopping={"monitor": "val_loss", "patience": 2})
        trainer = create_trainer(model, optimizer, loss_fn, cfg)
        evaluator = create_supervised_evaluator(model, metrics={"val_loss": Loss(loss_fn)})
        train = DataLoader(_digits_like(60), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2))
        speedups = attach_speedups(trainer, evaluator, cfg, val_data=DataLoader(_digits_like(24, seed=1), batch_size=8))
        return trainer, model, optimizer, speedups, train

    trainer, model, optimizer, speedups, train = interrupted()
    to_save = {"trainer": trainer, "model": model, "optimizer": optimizer, "speedups": speedups}
    checkpoint = Checkpoint(to_save, str(tmp_path), n_saved=None)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=10), checkpoint)

    @trainer.on(Events.ITERATION_COMPLETED(once=10))
    def crash(_):
        raise Stop

    with pytest.raises(Stop):
        trainer.run(train)
    trainer, model, optimizer, speedups, train = interrupted()
    to_load = {"trainer": trainer, "model": model, "optimizer": optimizer, "speedups": speedups}
    Checkpoint.load_objects(to_load, torch.load(str(tmp_path / checkpoint.last_checkpoint), weights_only=False))
    trainer.run(train)
    assert trainer.state.iteration == whole["trainer"].state.iteration
    for a, b in zip(model.state_dict().values(), whole["model"].state_dict().values()):
        assert torch.equal(a, b)


def test_the_handlers_alone_leave_the_loaders_as_they_are():
    trainer = Engine(lambda e, b: None)
    evaluator = Engine(lambda e, b: None)
    val = DataLoader(_digits_like(8), batch_size=4)
    ValidationSchedule(evaluator, val).attach(trainer)
    train = DataLoader(_digits_like(8), batch_size=4)
    trainer.run(train, max_epochs=1)
    assert trainer.state.dataloader is train and evaluator.state.dataloader is val


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_flag_takes_a_bool_only(value):
    with pytest.raises(TypeError, match=r"batched_fetch=.* has type .*; accepted: True or False"):
        SpeedConfig(batched_fetch=value)


def test_tensors_an_app_replaces_between_epochs_are_read_as_the_plain_loader_reads_them():
    data = _digits_like(12)
    subset = Subset(data, list(range(8)))
    fast = with_batched_fetch(DataLoader(subset, batch_size=4))
    first = [y.tolist() for _, y in fast]
    data.tensors = (data.tensors[0] * 0, data.tensors[1] * 0 + 7)  # a new curriculum stage, say
    subset.indices = [9, 10, 11, 8, 9, 10, 11, 8]
    plain = DataLoader(subset, batch_size=4)
    _assert_same_batches(plain, fast, epochs=1)
    assert [y.tolist() for _, y in fast] == [[7] * 4, [7] * 4] != first
