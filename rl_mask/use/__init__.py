"""Using a trained model: the owner encodes faces, the server embeds what crosses, the owner
compares; the standard verification / identification protocols; ONNX export.

    from rl_mask.use import EmbeddingServer, OwnerEncoder, compare

    owner = OwnerEncoder.from_run("runs/mask")           # owner side: the run's encoding
    probes, entries = owner.encode_files("faces/")       # ProtectedProbes: tensors only
    server = EmbeddingServer("runs/mask/fr.pt")          # server side: the model file only
    embeddings = server.embed(probes).embeddings         # ProbeEmbeddings
    print(compare(embeddings[0], embeddings[1]))         # cosine similarity
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rl_mask.use.embed import EmbeddingServer
from rl_mask.use.encode import ImageEntry, OwnerEncoder, list_images, load_images
from rl_mask.use.files import InputError, load_embeddings, load_probes, save_embeddings, save_probes


def compare(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of embeddings ``a [N, D]`` (or ``[D]``) and ``b`` (broadcast)."""
    return (F.normalize(a.float(), dim=-1) * F.normalize(b.float(), dim=-1)).sum(dim=-1)


__all__ = ["EmbeddingServer", "ImageEntry", "InputError", "OwnerEncoder", "compare", "list_images", "load_embeddings", "load_images", "load_probes", "save_embeddings", "save_probes"]
