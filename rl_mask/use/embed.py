"""The FR server's side of inference: ``ProtectedProbes`` -> ``ProbeEmbeddings``.

Needs the model file and the messages, nothing else: no face folder, no run config, no image
names. The embedding (the backbone's output), not the classifier head, is what inference
uses, so identities never seen in training can be enrolled and compared.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rl_mask.protocol import ProbeEmbeddings, ProtectedProbes
from rl_mask.server.trainer import load_fr_model, resolve_device
from rl_mask.use.files import InputError, load_probes, save_embeddings


class EmbeddingServer:
    """A trained FR model (``fr.pt``) answering probe messages with embeddings."""

    def __init__(self, model_path: str | Path, device: str = "cpu", chunk: int = 256):
        self.model_path = Path(model_path)
        self.device = resolve_device(device)
        self.model, self.meta = load_fr_model(self.model_path, self.device)
        self.chunk = chunk

    @property
    def input_shape(self) -> list[int]:
        return list(self.meta["input_shape"])

    def check(self, probes: ProtectedProbes, where: str = "the probes") -> None:
        """Probes of another encoding (another mask, image size or colour mode) do not fit the network."""
        got = list(probes.inputs.shape[1:])
        if got != self.input_shape:
            raise InputError(
                f"{where} are encoded as {got} (channels, h, w) but {self.model_path} takes {self.meta['input_kind']} inputs {self.input_shape}: "
                "they were encoded for a model of another mask or image size"
            )

    @torch.no_grad()
    def embed(self, probes: ProtectedProbes, where: str = "the probes") -> ProbeEmbeddings:
        if type(probes) is not ProtectedProbes:  # an owner-side record must not pass
            raise TypeError(f"EmbeddingServer.embed takes a ProtectedProbes (rl_mask.protocol), got {type(probes).__name__}")
        self.check(probes, where)
        out = [self.model.embed(probes.inputs[i : i + self.chunk].to(self.device)).cpu() for i in range(0, len(probes), self.chunk)]
        return ProbeEmbeddings(torch.cat(out))


def embed_file(model_path: str | Path, probes_path: str | Path, out: str | Path, device: str = "cpu") -> int:
    """``rl-mask embed``: read a probe file, write the embeddings; returns the row count."""
    server = EmbeddingServer(model_path, device)
    probes = load_probes(probes_path)
    embeddings = server.embed(probes, where=str(probes_path))
    save_embeddings(embeddings, out)
    return len(embeddings)
