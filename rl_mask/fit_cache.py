"""Fitted weights kept by what they were fitted from, so a fit repeated on identical inputs runs once.

Every trial of a sweep trains the same judge (same private faces, same seed) and many of them
train the same attack decoders (the evaluation door's k = 1 view, the unmixing attacks' view
of one mask): minutes per trial of identical work. A fit wrapped in ``fitted`` is looked up in
a cache folder by a SHA-256 of everything it reads (the tensors' bytes, the hyperparameters,
and a sample of the encoding it trains on, so a change of mask, key or flips misses); a hit
loads the weights (``weights_only``) and leaves the global torch RNG where the fit would have
left it, so what runs after a hit is the same as after the fit. Off unless a folder is set
(``use_cache_dir``); files are written atomically, so trials that fit the same thing at once
only race to write equal files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from rl_mask.checkpoint import build_checked, load_checkpoint, save_checkpoint

_cache_dir: Path | None = None


def use_cache_dir(path: str | Path | None) -> None:
    """Where this process keeps and looks up fits (``None``: fit every time)."""
    global _cache_dir
    _cache_dir = Path(path) if path is not None else None
    if _cache_dir is not None:
        _cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def fingerprint(*parts: Any) -> str:
    """SHA-256 of tensors (dtype, shape, bytes) and JSON-able values, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(f"tensor:{t.dtype}:{tuple(t.shape)}:".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
        else:
            h.update(("json:" + json.dumps(part, sort_keys=True, default=str)).encode())
        h.update(b"|")
    return h.hexdigest()


def fitted(kind: str, key: Callable[[], str], empty: Callable[[], nn.Module], fit: Callable[[], nn.Module]) -> nn.Module:
    """``fit()``'s model, from ``CACHE/{kind}-{key()}.pt`` when it holds one (built with ``empty()``
    and loaded strictly), else fitted and stored there. Returned in eval mode. Without a cache
    folder this is ``fit()``: the key is not even computed."""
    if _cache_dir is None:
        return fit()
    path = _cache_dir / f"{kind}-{key()}.pt"
    if path.is_file():
        state = load_checkpoint(path, required=("weights", "rng_after"))
        model = build_checked(empty, state["weights"], path)
        torch.set_rng_state(state["rng_after"])
        return model.eval()
    model = fit()
    save_checkpoint({"weights": model.state_dict(), "rng_after": torch.get_rng_state(), "kind": kind}, path)
    return model.eval()
