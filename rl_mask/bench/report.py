"""The benchmark's outputs: ``results.json``, ``results.md`` (tables with 95% intervals for a
person, significance calls, the threat model and an honest reading generated from the numbers,
with a loud warning when the judge is not competent), ``pareto.png`` (utility vs identity leak,
one point per defence, with error bars) and ``examples.png``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rl_mask.bench.front import pareto_front  # noqa: E402
from rl_mask.bench.stats import t_interval  # noqa: E402
from rl_mask.checkpoint import atomic_write_text  # noqa: E402
from rl_mask.owner.judge.privacy import ALPHA, BETA, PSNR_CEIL_DB, PSNR_FLOOR_DB  # noqa: E402

ATTACK_TITLES = {
    "whitebox": "white-box reconstruction",
    "blackbox": "black-box reconstruction",
    "mi-face": "MI-FACE",
    "gmi": "GAN-prior inversion (GMI)",
    "label-aware": "label-aware unmixing",
    "cross-batch": "cross-batch aggregation",
    "provenance": "provenance (what-if: needs a field that does not cross)",
    "whitebox-eval": "white-box reconstruction of the inference probes",
    "whitebox+recover": "white-box reconstruction after key recovery",
    "whitebox-eval+recover": "white-box reconstruction of the inference probes after key recovery",
}


#: Who each attack models (the threat-model section of results.md).
ATTACK_ADVERSARY = {
    "whitebox": "the FR server (or anyone on the wire) knowing every defence parameter: trains a decoder on public faces put through the exact defence",
    "blackbox": "the FR server knowing only the tensors' domain and shape: trains a decoder on a guessed defence",
    "mi-face": "a model holder with the trained FR model and its input encoding: gradient inversion of each identity's logit",
    "gmi": "a model holder as for MI-FACE, with a GAN prior learnt from the public faces",
    "label-aware": "the FR server using the labels and weights that cross with each batch: finds each row's partners among the batch's faces by identity, unmixes the linear system, decodes with the white-box decoder",
    "cross-batch": "the FR server using every batch it received: unmixes each with the label-aware attack, then averages each attacked row's decoded face with its most similar decoded faces of the same identity label from other batches (the same person recurs in new mixtures every epoch)",
    "provenance": "what-if only: the FR server if the sources (which faces were mixed) crossed too; they do not, so it never counts for a defence",
    "whitebox-eval": "the FR server reading the probe door: validation and test are scored on the owner's side and never cross, but an owner who embeds its held-out faces through the server sends them as k = 1 probes; the benchmark assumes it embeds every one, and decodes every probe (the validation and test faces') exactly as sent with a white-box decoder trained on public faces put through the public held-out encoding (without the owner's key)",
    "whitebox+recover": "the FR server as for white-box, which first estimates the owner's key from the second moments of every message it holds against its public faces' encoding (the construction is public, the seed is not) and rotates the crossed rows back; the plain white-box attack where there is no key",
    "whitebox-eval+recover": "the probe door as for whitebox-eval, after the same key recovery",
}

UNRELIABLE = "UNRELIABLE"


def counted(defence: dict) -> dict:
    """The attacks that count for a defence's worst case (what-if attacks do not)."""
    return {a: c for a, c in defence["attacks"].items() if not c.get("what_if")}


def worst_case(defence: dict) -> tuple[str, dict]:
    """The attack with the highest identity leak (acc@1; ties: lowest score) on a defence."""
    cells = counted(defence)
    if not cells:  # only linkage attacks were run: no judged leak
        return "-", {"acc1": float("nan"), "score": float("nan"), "ci": {}}
    name = max(cells, key=lambda a: (cells[a]["acc1"], -cells[a]["score"]))
    return name, cells[name]


def min_score(defence: dict) -> float:
    return min((c["score"] for c in counted(defence).values()), default=float("nan"))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(fig: dict, key: str, pct: bool = True, digits: int = 3) -> str:
    """``mean [lo, hi]`` of an aggregated figure (no interval: the mean alone)."""
    mean = fig.get(key)
    if mean is None or not math.isfinite(mean):
        return "n/a"
    ci = fig.get("ci", {}).get(key)
    if ci and not all(math.isfinite(v) for v in ci):
        ci = None
    if pct:
        text = _pct(mean)
        return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
    text = f"{mean:.{digits}f}"
    return text + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def _privacy(text: str, reliable: bool) -> str:
    return text if reliable else f"{UNRELIABLE}({text})"


def judge_warning(judge: dict) -> str:
    """The loud line printed (and put at the top of results.md) when the judge is below its floor."""
    return (
        f"WARNING: THE JUDGE IS NOT COMPETENT. Its clean held-out acc@1 is {_pct(judge['worst_seed_test_acc'])} "
        f"(worst seed), below benchmark.judge_min_acc = {_pct(judge['min_acc'])}. A judge that cannot recognise "
        "real private faces cannot measure leaks (it under-reports them): every leak and privacy score below is "
        f"marked {UNRELIABLE} and must not be read as privacy. Train it longer (benchmark.*.eval_model_steps) or check the data."
    )


def all_leak_keys(results: dict) -> list[str]:
    """Every top-1 leak figure any cell reports (``acc1`` first, then variants such as ``acc1_any``)."""
    keys: list[str] = []
    for df in results["defences"]:
        for c in df["attacks"].values():
            for k in c:
                if k.startswith("acc1") and not k.endswith("_rel") and k not in keys:
                    keys.append(k)
    return sorted(keys, key=lambda k: (k != "acc1", k))


def interval_rule(results: dict) -> str:
    if results["seeds"] >= 2:
        return (
            f"Intervals: 95% Student-t intervals of the mean over the {results['seeds']} seeds (FR training, replayed batches, "
            "attacks and judge reseeded together; the face split is fixed). Significance: Welch's t-test over seeds, p < 0.05."
        )
    return (
        "Intervals: one seed, so 95% Wilson binomial intervals over the n judged reconstructions (leaks) or held-out faces "
        "(utility, judge), and none for the other figures. They cover sampling of the samples only, not training randomness: "
        "rerun with `--seeds 3` before trusting a difference. Significance: the two 95% intervals do not overlap."
    )


def markdown(results: dict) -> str:
    d = results["data"]
    ev = results["evaluation_model"]
    budget = results["budget"]
    reliable = ev["competent"]
    leak_keys = all_leak_keys(results)
    lines = ["# rl-mask privacy benchmark", ""]
    if not reliable:
        lines += [f"> **{judge_warning(ev)}**", ""]
    lines += [
        f"Mode **{results['mode']}** on {d['root']}: {d['private_identities']} private identities "
        f"({d['private_train_images']} training / {d['private_test_images']} held-out faces), "
        f"{d['public_identities']} disjoint public identities ({d['public_images']} faces) for the attacker. "
        f"Chance identity leak acc@1 = {_pct(d['chance_acc1'])}. Base seed {results['seed']}, {results['seeds']} seed(s), "
        f"{results['torch_threads']} torch threads, wall time {results['wall_seconds'] / 60:.1f} min.",
        "",
        "Budget (every defence alike): " + ", ".join(f"{k}={v}" for k, v in budget.items()) + ".",
        "",
        f"Evaluation model (judge): {ev['architecture']}, trained on the clean private training faces; "
        f"held-out acc@1 {_ci(ev, 'test_acc')}, acc@5 {_ci(ev, 'test_top5')} "
        f"(floor benchmark.judge_min_acc = {_pct(ev['min_acc'])}: {'met' if reliable else '**NOT MET**'}).",
        "",
        interval_rule(results),
        "",
    ]
    est = results.get("runtime_estimate")
    if est:
        lines += ["Estimated wall time per seed from this run's per-cell timings (each piece scaled linearly by its budget; "
                  "fixed costs are scaled too, so from a tiny-budget run this over-estimates): " + ", ".join(f"{m} ~{v:.0f} min" for m, v in est.items()) + ".", ""]
    lines += [
        "## Utility and worst-case privacy per defence",
        "",
        "Leaks are also given as a fraction of the judge's clean held-out acc@1 (1 = reconstructions are recognised as well as real photos).",
        "",
        "**Headline: the worst leak above the do-nothing reference**, in points, beside the raw figure: the worst "
        "attack's acc@1 minus that of the do-nothing attacker (the mean public face for every row) on the same rows, "
        "so that rows near the any-of-k chance floor (about k / identities) compare.",
        "",
        "| defence | identification acc@1 | verification acc | DP epsilon (delta) | worst attack | **leak above reference** | its leak acc@1 | leak / judge acc | privacy score (min over attacks) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for df in results["defences"]:
        u = df["utility"]
        eps = f"{df['dp']['epsilon']:.2f} ({df['dp']['delta']:g})" if df.get("dp") else "-"
        wname, wcell = worst_case(df)
        lines.append(
            f"| {df['name']} | {_ci(u, 'identification_acc')} | {_pct(u['verification_acc'])} | {eps} | "
            f"{wname} | {_privacy(above_reference(wcell), reliable)} | {_privacy(_ci(wcell, 'acc1'), reliable)} | {_privacy(_ci(wcell, 'acc1_rel', pct=False, digits=2), reliable)} | "
            f"{_privacy(f'{min_score(df):.3f}', reliable)} |"
        )
    extra = [k for k in leak_keys if k != "acc1"]
    lines += [
        "",
        "## Every attack on every defence",
        "",
        "Identity leak by the evaluation model (acc@1 with its 95% interval, acc@1 / judge acc@1, acc@5), image similarity "
        "to the private original (SSIM, PSNR), KNN distance in the judge's feature space to the nearest private face of that "
        "identity (and as a ratio of the typical distance between different people), and the combined privacy score "
        "(1 = nothing leaks).",
        "",
        "| defence | attack | n | acc@1 | acc@1 / judge | " + "".join(f"{k} | " for k in extra) + "acc@5 | SSIM | PSNR (dB) | KNN dist (ratio) | privacy score |",
        "|---|---|---|---|---|" + "---|" * len(extra) + "---|---|---|---|---|",
    ]

    def row(label: str, attack: str, c: dict) -> str:
        extras = "".join(f"{_privacy(_ci(c, k), reliable) if k in c else '-'} | " for k in extra)
        return (
            f"| {label} | {attack} | {c['n']:.0f} | {_privacy(_ci(c, 'acc1'), reliable)} | {_privacy(_ci(c, 'acc1_rel', pct=False, digits=2), reliable)} | "
            f"{extras}{_privacy(_pct(c['acc5']), reliable)} | {c['ssim']:.3f} | {c['psnr']:.2f} | {c['knn']:.3f} ({c['knn_ratio']:.2f}) | "
            f"{_privacy(_ci(c, 'score', pct=False), reliable)} |"
        )

    for df in results["defences"]:
        for name, c in df["attacks"].items():
            shown = f"{name} (what-if)" if c.get("what_if") else name
            lines.append(row(df["name"], shown, c))
    b = results.get("baseline_mean_public_face")
    if b:
        lines.append(row("*reference*", "mean public face (do-nothing attacker)", b))
    lines += linkage_section(results)
    lines += significance_section(results, leak_keys)
    lines += threat_model_section(results, leak_keys)
    lines += honest_reading(results)
    lines += ["", "## Notes", ""]
    lines += [
        "- **Threat models.** Every attack gets exactly what crossed to the FR server: the `ProtectedBatch` messages "
        "(inputs, labels of every mixed face, mixing weights; a replay of the first training batches of the FR run) and the "
        "trained model; never the provenance (which faces a row mixes) nor any original. *White-box* reconstruction knows the "
        "defence and every parameter and simulates it on public faces; *black-box* estimates the kept DCT channels from the "
        "crossed tensors and trains on MixUp of "
        f"k={_guess_k(results)} faces with Dirichlet(1) weights capped at 0.65, no sign flips; *label-aware* infers from the "
        "crossed labels which faces of the batch each row mixes, unmixes the batch and decodes every row's own face. "
        "MI-FACE and GMI get the trained FR model (and the input encoding it needs) and recover one face per private identity. "
        "*provenance* is a what-if row: it is handed the provenance that does not cross, and is never a defence's worst case.",
        "- **Leak counting.** For reconstruction attacks a hit is the judge naming *any* of the k identities mixed in the row "
        "(acc@1 = any-of-k; `acc1_dominant` in results.json counts only the largest-weight face).",
        "- **PSNR/SSIM references.** Reconstruction attacks: the best-matching of the row's k originals (the augmented faces "
        "that were encoded; against the dominant one in results.json). "
        "Inversion attacks: the best value over that identity's private training faces.",
        f"- **Privacy score** (per cell): `{ALPHA} * (visual + psnr_term + feature)/3 + {BETA} * attack`, with "
        "visual = 1 - clip(SSIM, 0, 1), "
        f"psnr_term = 1 - clip((PSNR - {PSNR_FLOOR_DB:g}) / ({PSNR_CEIL_DB:g} - {PSNR_FLOOR_DB:g}), 0, 1), "
        "feature = clip(KNN ratio, 0, 1), attack = 1 - clip((acc@1 - chance) / (1 - chance), 0, 1). "
        "A defence's privacy is its lowest score over the attacks.",
        "- **dpsgd** protects the trained model (formal epsilon at the stated delta); its training tensors are plain "
        "pixels, so the reconstruction attacks face no protection there by design.",
    ]
    for df in results["defences"]:
        if df.get("note"):
            lines.append(f"- **{df['name']}**: {df['note']}.")
    lines += ["", "Plots: `pareto.png` (utility vs worst-case identity leak, 95% intervals as error bars), `examples.png` (one sample per defence, first seed)."]
    return "\n".join(lines) + "\n"


def above_reference(cell: dict) -> str:
    """``cell``'s acc@1 minus the do-nothing attacker's on the same rows (``reference_acc1``),
    in points; with several seeds the mean and a t-interval of the per-seed differences."""
    if "reference_acc1" not in cell:
        return "n/a"
    a, b = cell.get("seeds", {}).get("acc1"), cell.get("seeds", {}).get("reference_acc1")
    text = f"{100 * (cell['acc1'] - cell['reference_acc1']):+.1f}"
    if a and b and len(a) == len(b) >= 2:
        lo, hi = t_interval([x - y for x, y in zip(a, b)])
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return text


LINKAGE_TITLES = {
    "link-abs": "statistics: mean |coef| per channel and position",
    "link-energy": "statistics: energy per block position (key-invariant)",
    "link-model": "model: the trained classifier names the candidate",
    "link-sorted": "statistics: each row's sorted magnitudes (blind to any permutation key)",
    "link-abs+recover": "statistics after key recovery",
    "link-energy+recover": "block energy after key recovery",
    "link-model+recover": "model after key recovery",
}


def linkage_section(results: dict) -> list[str]:
    """Identity linkage: per defence and linkage attack, the fraction of private labels whose
    best-matching candidate is the right person, with its interval and chance."""
    rows = [df for df in results["defences"] if df.get("linkage")]
    if not rows:
        return []
    names = list(rows[0]["linkage"])
    first = rows[0]["linkage"][names[0]]
    lines = [
        "",
        "## Identity linkage (appearance is not identity)",
        "",
        f"Gallery: {1 / first['chance']:.0f} candidate people (every private identity's held-out test faces, never in a "
        "training batch, plus public distractors with as many faces each). Per private label the attacker picks the "
        "best-matching candidate from what crossed (every training row of the attacked and context batches, grouped by its "
        "dominant crossed label) or from the trained model; the figure is the fraction of labels linked to the right person. "
        f"Chance {_pct(first['chance'])}; n = {first['n']:.0f} labels. Attacks: "
        + "; ".join(f"`{a}`: {LINKAGE_TITLES.get(a, a)}" for a in names) + ".",
        "",
        "| defence | training rows used | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for df in rows:
        cells = [_ci(df["linkage"][a], "identification") if a in df["linkage"] else "-" for a in names]
        lines.append(f"| {df['name']} | {df['linkage'][names[0]]['rows']:.0f} | " + " | ".join(cells) + " |")
    return lines + key_recovery_lines(results)


def key_recovery_lines(results: dict) -> list[str]:
    """How much of each scramble or dense key the ``+recover`` attacks recovered (scored by the
    owner, who knows the key): the attacks' figures above rest on this."""
    rows = [df for df in results["defences"] if df.get("key_recovery")]
    if not rows:
        return []
    lines = ["", "Key recovered by the attacker (owner-scored; scramble: a block is 8x8 coefficients of one position; dense: the key's action on the public mixtures' leading directions):", ""]
    for df in rows:
        k = df["key_recovery"]
        if "subspace_overlap" in k:
            lines.append(
                f"- {df['name']}: the key on the {k['directions']:.0f} leading public directions, recovered subspace overlap {k['subspace_overlap']:.3f} "
                f"(1 = exact; random directions under the same favourable sign gauge: {k['chance_subspace_overlap']:.3f})"
            )
            continue
        lines.append(
            f"- {df['name']}: blocks found {_pct(k['block_purity'])} pure; blocks at their own position {_pct(k['block_position'])}, "
            f"at the mirror position {_pct(k['block_position_mirrored'])} (chance {_pct(k['chance_block_position'])}); within one "
            f"block {_pct(k['within_one_block'])} (mirrored {_pct(k['within_one_block_mirrored'])}); exact coefficients {_pct(k['coefficient'])}"
        )
    return lines


def _mark(c: dict) -> str:
    if not c["significant"]:
        return "n.s."
    arrow = "lower" if c["mean"] < c["versus_mean"] else "higher"
    p = f", p={c['p']:.3f}" if c.get("p") is not None else ""
    return f"**{arrow}**{p}"


def significance_section(results: dict, leak_keys: list[str]) -> list[str]:
    """One table per reference (none, mask, random-k, the row above): per defence and attack,
    whether its leak (and utility) differs significantly from the reference's."""
    comps = results.get("significance") or []
    if not comps:
        return []
    attacks = list(results["defences"][0]["attacks"])
    lines = [
        "",
        "## Which differences are significant",
        "",
        "Each defence against `none`, `mask`, `random-k` and the row above it: **lower**/**higher** = significantly "
        f"different (rule: {'Welch p < 0.05 over seeds' if results['seeds'] >= 2 else 'non-overlapping 95% intervals'}), "
        "n.s. = not significantly different. Leak = " + ", ".join(leak_keys) + ".",
    ]
    order = ["vs none", "vs mask", "vs random-k", "adjacent"]
    for why in sorted(dict.fromkeys(c["why"] for c in comps), key=order.index):
        group = [c for c in comps if c["why"] == why]
        lines += ["", f"### {why}", "", "| defence | versus | utility acc@1 | " + " | ".join(attacks) + " |", "|---|---|---|" + "---|" * len(attacks)]
        for a, b in dict.fromkeys((c["defence"], c["versus"]) for c in group):
            cells = {(c["attack"], c["key"]): c for c in group if c["defence"] == a and c["versus"] == b}
            util = cells.get((None, "identification_acc"))
            per_attack = []
            for att in attacks:
                marks = [f"{k}: {_mark(cells[(att, k)])}" if len(leak_keys) > 1 else _mark(cells[(att, k)]) for k in leak_keys if (att, k) in cells]
                per_attack.append("; ".join(marks) or "-")
            lines.append(f"| {a} | {b} | {_mark(util) if util else '-'} | " + " | ".join(per_attack) + " |")
    return lines


def threat_model_section(results: dict, leak_keys: list[str]) -> list[str]:
    d = results["data"]
    ev = results["evaluation_model"]
    attacks = list(results["defences"][0]["attacks"]) if results["defences"] else []
    lines = [
        "",
        "## Threat model",
        "",
        "| party | sees | never sees |",
        "|---|---|---|",
        "| data owner | the private faces, their labels, every mixing weight and provenance; runs the judge and `export-masked` | - |",
        "| FR server | every message that crosses (`rl_mask/protocol.py`): the protected training tensors exactly as they leave the owner, the labels of every mixed face and the mixing weights (`ProtectedBatch`), the training setup, and, when the owner embeds faces through it, k = 1 inference probes (`ProtectedProbes`: the benchmark assumes every held-out face is sent so) | the original faces, the validation and test faces (the owner scores the model it hands back on its own side), which faces of a batch each row mixes (the provenance), any statistic of the raw faces |",
        "| model holder (anyone given the trained FR model) | the trained model and the input encoding it needs | the training tensors, the faces |",
        "",
        "Which adversary each attack models:",
        "",
    ]
    for a in attacks:
        lines.append(f"- **{ATTACK_TITLES.get(a, a)}** (`{a}`): {ATTACK_ADVERSARY.get(a, 'see its description in results.json')}.")
    lines += [
        "",
        "Reconstruction attacks get the protected training tensors (a replay of the first training batches of the FR run) and "
        "must recover each sample's face"
        + (
            "; the black-box guess is the same number of removed channels but the lowest in row-major (not zig-zag) order, "
            f"and MixUp of k={_guess_k(results)} faces with Dirichlet(1) weights capped at 0.65, no sign flips"
            if "blackbox" in attacks
            else ""
        )
        + ". Inversion attacks recover one face per private identity.",
        "",
        f"- **Chance level**: acc@1 = 1 / {d['private_identities']} private identities = {_pct(d['chance_acc1'])}; "
        "the do-nothing attacker (the mean public face) is in the table as a reference.",
        f"- **The judge** is an independent model trained only on the clean private training faces and tested on held-out "
        f"private faces: acc@1 {_ci(ev, 'test_acc')} (worst seed {_pct(ev['worst_seed_test_acc'])}; floor {_pct(ev['min_acc'])}). "
        "A leak can be at most about what the judge gets right on real photos, hence the `leak / judge acc` column; below "
        "the floor every privacy figure is marked unreliable.",
        "- **Leak definitions**: `acc1` (also `acc1_dominant` where reported) is the fraction of reconstructions the judge "
        "assigns to the identity of the sample's *dominant* face (largest mixing weight); `acc1_any` (where reported) counts "
        "a reconstruction as a leak when the judge's top-1 is *any* of the k identities mixed into that sample (chance is then "
        "about k / identities, not 1 / identities). Inversion attacks have one identity per image, so both coincide there.",
        f"- {interval_rule(results)}",
    ]
    return lines


def _refs(results: dict, ref: str, key: str = "acc1") -> dict[str, list[str]]:
    """Per defence: the attacks on which its leak is NOT significantly different from ``ref``'s."""
    out: dict[str, list[str]] = {}
    for c in results.get("significance") or []:
        if c["versus"] == ref and c["why"] == f"vs {ref}" and c["key"] == key and c["attack"] is not None and not c["significant"]:
            out.setdefault(c["defence"], []).append(c["attack"])
    return out


def honest_reading(results: dict) -> list[str]:
    """A paragraph generated from the numbers: what the table does and does not show."""
    ev = results["evaluation_model"]
    names = [df["name"] for df in results["defences"]]
    chance = results["data"]["chance_acc1"]
    out = ["", "## Honest reading", ""]
    if not ev["competent"]:
        out.append("- **The judge is below its competence floor: none of the leak figures above can be read as privacy.**")
    if results["seeds"] < 2:
        out.append("- One seed: the intervals ignore training randomness; treat every \"significant\" call as provisional.")
    all_attacks = list(results["defences"][0]["attacks"]) if results["defences"] else []
    for ref in ("none", "mask"):
        if ref not in names:
            continue
        same = _refs(results, ref)
        whole = [n for n, atts in same.items() if set(atts) == set(all_attacks)]
        if whole:
            out.append(f"- Not significantly different from `{ref}` on any attack's acc@1 leak: {', '.join(f'`{n}`' for n in whole)}.")
        part = {n: a for n, a in same.items() if n not in whole}
        for n, a in part.items():
            out.append(f"- `{n}` is not significantly different from `{ref}` under {', '.join(a)}.")
        if not same:
            out.append(f"- Every defence differs significantly from `{ref}` on every attack's acc@1 leak.")
    above = []
    for df in results["defences"]:
        for a, c in df["attacks"].items():
            ci = c.get("ci", {}).get("acc1")
            if ci and ci[0] > chance + 1e-9:
                above.append(f"`{df['name']}`/{a} ({_pct(c['acc1'])})")
    if above:
        out.append(f"- Leaks whose 95% interval lies above chance ({_pct(chance)}): " + ", ".join(above) + ".")
    else:
        out.append(f"- No leak's 95% interval lies entirely above chance ({_pct(chance)}).")
    if "none" in names:
        base = next(df for df in results["defences"] if df["name"] == "none")
        costly = [c["defence"] for c in results.get("significance") or [] if c["versus"] == "none" and c["attack"] is None and c["significant"] and c["mean"] < c["versus_mean"]]
        if costly:
            out.append(f"- Utility significantly below `none` ({_pct(base['utility']['identification_acc'])}): {', '.join(f'`{n}`' for n in costly)}.")
    return out


def _guess_k(results: dict) -> str:
    for df in results["defences"]:
        c = df["attacks"].get("blackbox")
        if c:
            return str(c["attack"].get("guess_k", "?"))
    return "?"


def pareto_points(results: dict) -> list[tuple[str, float, float]]:
    """(defence, worst-case leak acc@1, identification acc@1)."""
    return [(df["name"], worst_case(df)[1]["acc1"], df["utility"]["identification_acc"]) for df in results["defences"]]


def _err(fig: dict, key: str) -> list[float]:
    """[below, above] the mean for matplotlib's error bars (0 where no interval)."""
    ci = fig.get("ci", {}).get(key)
    return [fig[key] - ci[0], ci[1] - fig[key]] if ci else [0.0, 0.0]


def plot_pareto(results: dict, path: Path) -> None:
    points = pareto_points(results)
    front = set(pareto_front(points))
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    rows = {df["name"]: df for df in results["defences"]}
    for name, leak, util in points:
        df = rows[name]
        xerr, yerr = _err(worst_case(df)[1], "acc1"), _err(df["utility"], "identification_acc")
        ax.errorbar(leak, util, xerr=[[xerr[0]], [xerr[1]]], yerr=[[yerr[0]], [yerr[1]]], fmt="o", ms=7, capsize=3, color="tab:red" if name in front else "tab:blue", zorder=3)
        ax.annotate(name, (leak, util), textcoords="offset points", xytext=(6, 4), fontsize=9)
    fp = sorted((leak, util) for name, leak, util in points if name in front)
    if len(fp) > 1:
        ax.plot(*zip(*fp), color="tab:red", alpha=0.5, zorder=2, label="Pareto front")
        ax.legend(loc="lower right")
    chance = results["data"]["chance_acc1"]
    ax.axvline(chance, color="grey", ls="--", lw=1)
    ax.text(chance, 0.02, " chance", color="grey", fontsize=8)
    ax.set_xlabel("identity leak: worst-case attack acc@1 (evaluation model)  [lower is more private]")
    ax.set_ylabel("utility: identification acc@1 (held-out)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    title = f"rl-mask benchmark ({results['mode']}, {results.get('seeds', 1)} seed(s), 95% intervals)"
    if not results["evaluation_model"].get("competent", True):
        title += "\nJUDGE BELOW FLOOR: LEAKS UNRELIABLE"
    ax.set_title(title, color="black" if results["evaluation_model"].get("competent", True) else "red")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_examples(examples: list[dict], path: Path) -> None:
    """One row per defence: the dominant original, what left the data owner, then every attack's
    reconstruction of that sample (reconstruction attacks) or of its identity (inversions)."""
    if not examples:
        return
    attacks = list(examples[0]["recs"])
    cols = ["original", "what leaves"] + attacks
    fig, axes = plt.subplots(len(examples), len(cols), figsize=(1.3 * len(cols), 1.6 * len(examples)), squeeze=False)
    for r, ex in enumerate(examples):
        images = [ex["original"][0], ex["view"][0]]
        for a in attacks:
            rec = ex["recs"][a]
            i = 0 if rec.kind == "reconstruction" else int(ex["label"])
            images.append(rec.images[i])
        for c, img in enumerate(images):
            ax = axes[r][c]
            x = img.detach().float()
            x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
            if c == 1:  # the encoded view has its own range
                lo, hi = float(x.min()), float(x.max())
                x = (x - lo) / max(hi - lo, 1e-6) * 2 - 1
            ax.imshow(((x.clamp(-1, 1) + 1) / 2).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(ex["name"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(results: dict, out: str | Path, examples: list[dict] | None = None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "results.md", markdown(results))
    plot_pareto(results, out / "pareto.png")
    if examples:
        plot_examples(examples, out / "examples.png")
