"""FR training and evaluation: one step, evaluation, checkpoints, the train-fr loop."""

from rl_mask.metrics import identification_accuracy, verification_accuracy
from rl_mask.server.trainer import FRTrainer, build_model, resolve_device

__all__ = ["FRTrainer", "build_model", "identification_accuracy", "resolve_device", "verification_accuracy"]
