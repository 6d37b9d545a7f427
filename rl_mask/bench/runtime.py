"""How long another benchmark mode would take, estimated from this run's per-cell timings:
each timed piece is scaled linearly by the budget figure that drives its cost (FR steps,
decoder steps, GAN steps, ...). An estimate, not a measurement: fixed costs (evaluation,
data loading) are scaled too, so short runs over-estimate a little."""

from __future__ import annotations

#: Timing-key prefix -> the budget figures whose product drives that piece's cost.
COST_DRIVERS: dict[str, tuple[str, ...]] = {
    "evaluation_model": ("eval_model_steps",),
    "train/": ("fr_steps",),
    "fit/whitebox/": ("decoder_steps",),
    "fit/blackbox/": ("decoder_steps",),
    "fit/gmi/": ("gan_steps",),
    "attack/mi-face/": ("mi_steps", "mi_restarts"),
    "attack/gmi/": ("gmi_steps", "gmi_restarts"),
    "attack/cross-batch/": ("context_batches",),
    "attack/": ("attack_batches",),
}


def _cost(budget: dict, drivers: tuple[str, ...]) -> float:
    out = 1.0
    for d in drivers:
        out *= budget[d]
    return out


def estimate_seconds(timings: dict[str, float], measured: dict, target: dict) -> float:
    """Seconds ``timings`` (measured under budget ``measured``) would take under ``target``."""
    total = 0.0
    for key, seconds in timings.items():
        drivers = next((d for prefix, d in COST_DRIVERS.items() if key.startswith(prefix)), ())
        ratio = _cost(target, drivers) / _cost(measured, drivers) if drivers else 1.0
        total += seconds * ratio
    return total


def estimate_runtime(timings: dict[str, float], measured: dict, modes: dict[str, dict]) -> dict:
    """Estimated minutes per seed for every mode (budgets by name) from one seed's timings."""
    return {name: round(estimate_seconds(timings, measured, budget) / 60, 1) for name, budget in modes.items()}
