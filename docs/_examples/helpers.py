import torch
from ignite.engine import Engine, Events
from torch.utils.data import DataLoader, TensorDataset


def loader(n_batches, batch_size=2):
    """A tiny regression data set of ``n_batches`` batches (y = 2x)."""
    x = torch.arange(n_batches * batch_size, dtype=torch.float32).reshape(-1, 1) / 10
    return DataLoader(TensorDataset(x, 2 * x), batch_size=batch_size)


def make_engines():
    """A trainer and an evaluator for a one-weight model; the evaluator logs ``val_loss``."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_step(engine, batch):
        x, y = batch
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    def val_step(engine, batch):
        x, y = batch
        with torch.no_grad():
            return torch.nn.functional.mse_loss(model(x), y).item()

    trainer, evaluator = Engine(train_step), Engine(val_step)

    @evaluator.on(Events.EPOCH_STARTED)
    def reset(engine):
        engine.state.losses = []

    @evaluator.on(Events.ITERATION_COMPLETED)
    def collect(engine):
        engine.state.losses.append(engine.state.output)

    @evaluator.on(Events.EPOCH_COMPLETED)
    def log_val_loss(engine):
        engine.state.metrics["val_loss"] = sum(engine.state.losses) / len(engine.state.losses)

    return trainer, evaluator


def report(speedups):
    """One line with the counters of a finished run."""
    p = speedups.progress
    print(
        f"{p.total_batches} batches, {p.global_step} steps, {p.epochs_done} epochs, "
        f"{p.val_runs} validation runs; stopped: {speedups.stop_reason.value}"
    )
