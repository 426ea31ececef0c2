"""The training loop that the handlers of one trainer share (:class:`TrainingLoop`), and what it owns:
counters (:class:`Progress`), the stop decision (:class:`StopController`), the training clock, the data
position for exact resume, and the ranks' agreement on stop requests.

Nothing here imports a handler: handlers register with the loop and the loop calls them through the
handler protocol (:mod:`ignite_speed.handlers.base`).
"""

from .progress import Progress
from .stop import RankFailureError, StopController, StopReason, StopRequest
from .training_loop import StepEvents, TrainingLoop

__all__ = ["TrainingLoop", "Progress", "StopController", "StopReason", "StopRequest", "RankFailureError", "StepEvents"]
