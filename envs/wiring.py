"""What an env is wired to: one typed value in place of string keys in RLlib's env config.

RLlib hands every env an ``EnvContext`` (a dict, with the worker and vector index); rl-mask
puts one ``EnvWiring`` in it under ``WIRING_KEY``. It is checked once, when it is made, so a
wrong value fails in the driver with the field's name, not in an env runner on another node.
Its endpoints carry names (Ray actors, services hosted in this process), so it pickles and
deep-copies as RLlib needs; an ``Endpoint(service=...)`` is for code that builds the env itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from envs.fr_client import Endpoint
from rl_mask.config import Config
from rl_mask.owner.judge.evaluator import EvaluationModel

WIRING_KEY = "wiring"


@dataclass(frozen=True)
class EnvWiring:
    """``config``: the owner's validated config. ``fr`` / ``attacker``: where the FR server and
    the attacker in the loop (None: none) are reached. ``judge``: the owner's judge of the
    attacker (a model or the path of ``RUN_DIR/judge.pt``). ``run_dir``: where sent batches are
    recorded (None: not recorded). ``train_fr``: False scores batches on a frozen FR network.
    ``total_fr_steps``: the FR steps the run plans (None: one per env step). ``keep_batches``:
    how many sent batches the env keeps with their provenance (the benchmark attacks them)."""

    config: Config
    fr: Endpoint
    attacker: Endpoint | None = None
    judge: str | EvaluationModel | None = None
    run_dir: str | None = None
    train_fr: bool = True
    total_fr_steps: int | None = None
    keep_batches: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.config, Config):
            raise ValueError(f"EnvWiring.config: a rl_mask.config.Config, got {type(self.config).__name__}")
        self.config.validate()
        for name, optional in (("fr", False), ("attacker", True)):
            value = getattr(self, name)
            if not (isinstance(value, Endpoint) or (optional and value is None)):
                raise ValueError(f"EnvWiring.{name}={value!r}: an envs.fr_client.Endpoint{' or None' if optional else ''}")
        if not (self.judge is None or isinstance(self.judge, (str, EvaluationModel))):
            raise ValueError(f"EnvWiring.judge={self.judge!r}: the path of a judge checkpoint, a judge model, or None")
        if self.attacker is not None and self.judge is None:
            raise ValueError("EnvWiring.judge: the attacker in the loop needs the owner's judge to score it")
        rl = self.config.rl
        if self.attacker is None and rl.reward != "paper":
            raise ValueError(f"rl.reward={rl.reward!r} needs the attacker in the loop (EnvWiring.attacker is None)")
        if isinstance(self.run_dir, Path):
            object.__setattr__(self, "run_dir", str(self.run_dir))
        if not (self.run_dir is None or isinstance(self.run_dir, str)):
            raise ValueError(f"EnvWiring.run_dir={self.run_dir!r}: a folder path or None")
        if not isinstance(self.train_fr, bool):
            raise ValueError(f"EnvWiring.train_fr={self.train_fr!r}: True or False")
        if self.total_fr_steps is not None and not (isinstance(self.total_fr_steps, int) and self.total_fr_steps >= 1):
            raise ValueError(f"EnvWiring.total_fr_steps={self.total_fr_steps!r}: an integer >= 1, or None")
        if not (isinstance(self.keep_batches, int) and self.keep_batches >= 0):
            raise ValueError(f"EnvWiring.keep_batches={self.keep_batches!r}: an integer >= 0")

    @property
    def planned_fr_steps(self) -> int:
        rl = self.config.rl
        return self.total_fr_steps if self.total_fr_steps is not None else rl.iterations * rl.train_batch_size

    def env_config(self, worker_index: int = 0, vector_index: int = 0) -> dict:
        """An env config holding this wiring (RLlib adds the indices itself)."""
        return {WIRING_KEY: self, "worker_index": worker_index, "vector_index": vector_index}


def read_env_config(env_config: Mapping[str, Any] | None) -> tuple[EnvWiring, int, int]:
    """The wiring and the (worker, vector) index of an env config or RLlib ``EnvContext``."""
    env_config = env_config if env_config is not None else {}
    wiring = env_config.get(WIRING_KEY)
    if not isinstance(wiring, EnvWiring):
        raise ValueError(f"env_config[{WIRING_KEY!r}]: an envs.wiring.EnvWiring, got {type(wiring).__name__} (keys: {sorted(env_config)})")
    worker = int(getattr(env_config, "worker_index", None) or env_config.get("worker_index", 0))
    vector = int(getattr(env_config, "vector_index", None) or env_config.get("vector_index", 0))
    return wiring, worker, vector
