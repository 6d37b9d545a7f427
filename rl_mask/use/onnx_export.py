"""``rl-mask export-onnx``: the FR embedding network as ONNX, for serving outside Python.

Exports the backbone (protected input -> embedding; the classifier head is not needed for
verification or identification) with a dynamic batch axis through torch's ``torch.export``
based exporter, then runs the file in onnxruntime and the torch model on the same inputs and
refuses to write a file whose outputs differ by more than ``TOLERANCE``. Needs the ``onnx``
extra (``pip install -e ".[onnx]"``): onnx, onnxscript and onnxruntime.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from rl_mask.checkpoint import atomic_write_bytes
from rl_mask.config import ConfigError
from rl_mask.server.trainer import load_fr_model

TOLERANCE = 1e-4  # max abs difference of embeddings (their entries are O(1))
INPUT_NAME, OUTPUT_NAME = "inputs", "embeddings"


def _require_extra():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs the onnx extra: pip install -e \".[onnx]\" ({exc.name} is missing)") from exc
    return onnxruntime


def onnx_embeddings(model_bytes: bytes, inputs: torch.Tensor) -> torch.Tensor:
    """Run an exported model in onnxruntime (CPU)."""
    ort = _require_extra()
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: inputs.numpy().astype("float32")})[0])


def export_onnx(model_path: str | Path, out: str | Path, check_inputs: torch.Tensor | None = None, seed: int = 0) -> dict:
    """Export ``fr.pt``'s embedding network to ``out`` and check it against torch on
    ``check_inputs`` (default: 16 seeded random inputs of the model's shape)."""
    _require_extra()
    model, meta = load_fr_model(model_path)
    backbone = model.backbone.eval()
    shape = list(meta["input_shape"])
    if check_inputs is None:
        check_inputs = torch.randn(16, *shape, generator=torch.Generator().manual_seed(seed))
    example = check_inputs[:2]
    with warnings.catch_warnings(), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            backbone,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    data = program.model_proto.SerializeToString()
    with torch.no_grad():
        expected = backbone(check_inputs)
    got = onnx_embeddings(data, check_inputs)
    diff = float((got - expected).abs().max())
    if not diff <= TOLERANCE:
        raise ConfigError(f"the ONNX export of {model_path} differs from torch by {diff:.2e} (> {TOLERANCE:g}); nothing written")
    atomic_write_bytes(out, data)
    return {"out": str(Path(out).resolve()), "input_shape": ["batch", *shape], "embedding_dim": int(expected.shape[1]), "checked_inputs": int(check_inputs.shape[0]), "max_abs_diff": diff, "tolerance": TOLERANCE}


class _quiet:
    """Silence a logger (the exporter logs about optional torchvision ops) for a block."""

    def __init__(self, name: str):
        self.logger = logging.getLogger(name)

    def __enter__(self):
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
