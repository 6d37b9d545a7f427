"""Reading a finished run folder: its config, summary, trained model and the defence it used.

Two kinds of folders exist: ``rl-mask train-fr`` runs (``summary.json`` holds ``defence``, the
defence's parameters; the training batches can be replayed exactly from the seed), and
``rl-mask train`` adaptive runs (``summary.json`` holds the learned policy's
``k_distribution``; batches came from RL env runners: the first few each sent are kept as
sent in ``boundary/``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rl_mask.config import Config, ConfigError, load_config

#: Run folders hold face-derived data (protected batches, checkpoints, the owner's judge): owner-only.
from rl_mask.mask.defences import Defence
from rl_mask.owner.defences import build_defence, hybrid_defence

#: Run folders hold face-derived data (protected batches, checkpoints, the owner's judge): owner-only.
RUN_DIR_MODE = 0o700


def check_out_dir(path: str | Path, leftovers: frozenset[str] = frozenset()) -> Path:
    """Refuse (one line naming the folder) an ``--out`` a new run may not write into.

    It must be absent or empty, or hold nothing but ``leftovers`` (the names an attempt of the
    same command writes before it was killed, for a retried job): a run never overwrites or
    deletes files it did not write.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a folder")
    if path.is_dir():
        other = sorted(p.name for p in path.iterdir() if p.name not in leftovers)
        if other:
            shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
            raise ConfigError(f"--out {path} is not empty (it holds {shown}); a new run goes into a new or empty folder")
    return path


def claim_out_dir(path: str | Path, leftovers: frozenset[str] = frozenset()) -> Path:
    """``check_out_dir``, then the folder created (or tightened) owner-only."""
    path = check_out_dir(path, leftovers)
    path.mkdir(parents=True, exist_ok=True, mode=RUN_DIR_MODE)
    os.chmod(path, RUN_DIR_MODE)
    return path


def autosave_path(run_dir: str | Path) -> Path:
    """The FR service's own recovery save (an actor restarted after a crash reloads it)."""
    return Path(run_dir).resolve() / "checkpoints" / "fr_autosave.pt"


@dataclass
class RunFolder:
    path: Path
    cfg: Config
    summary: dict
    defence: Defence
    replayable: bool  # True: TrainingStream(cfg, defence) reproduces the run's batches exactly

    @property
    def fr_weights(self) -> Path:
        return self.path / "fr.pt"


def k_distribution(summary: dict, where: Path) -> tuple[list[int], list[float]]:
    """``{"2": p, ...}`` from an adaptive run's summary -> ``(ks, probs)``."""
    dist = summary.get("k_distribution")
    if not isinstance(dist, dict) or not dist:
        raise ConfigError(f"{where}: k_distribution must be a mapping like {{\"2\": 0.3, ...}}, got {dist!r}")
    try:
        items = sorted((int(k), float(p)) for k, p in dist.items())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: k_distribution {dist!r} has a non-integer k or non-numeric probability") from exc
    if any(p < 0 for _, p in items) or sum(p for _, p in items) <= 0 or any(k < 1 for k, _ in items):
        raise ConfigError(f"{where}: k_distribution {dist!r} needs k >= 1 and non-negative probabilities, not all zero")
    return [k for k, _ in items], [p for _, p in items]


def defence_from_description(cfg: Config, desc: dict, where: Path) -> Defence:
    """Rebuild a train-fr run's defence from ``summary["defence"]`` and check it matches."""
    name = desc.get("name")
    if name == "adaptive":
        defence: Defence = hybrid_defence(cfg, "adaptive", desc["ks"], desc["k_probs"])
    else:
        try:
            defence = build_defence(cfg, name)
        except ValueError as exc:
            raise ConfigError(f"{where}: defence {name!r} is not one this version knows") from exc
    if defence.describe() != desc:
        raise ConfigError(f"{where}: the recorded defence {desc} does not match what config.yaml builds ({defence.describe()})")
    return defence


def read_run(run_dir: str | Path) -> RunFolder:
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"run folder {path} does not exist")
    for name in ("config.yaml", "summary.json", "fr.pt"):
        if not (path / name).is_file():
            raise ConfigError(f"run folder {path} has no {name} (is it an rl-mask train or train-fr output?)")
    cfg = load_config(path / "config.yaml")
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{summary_path} is not valid JSON: {exc}") from exc
    if "k_distribution" in summary:
        ks, probs = k_distribution(summary, summary_path)
        return RunFolder(path, cfg, summary, hybrid_defence(cfg, "adaptive", ks, probs), replayable=False)
    if "defence" in summary:
        return RunFolder(path, cfg, summary, defence_from_description(cfg, summary["defence"], summary_path), replayable=True)
    raise ConfigError(f"{summary_path} has neither k_distribution (rl-mask train) nor defence (rl-mask train-fr)")
