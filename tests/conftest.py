import warnings

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_ignite_logs():
    import logging

    logging.getLogger("ignite").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield
