"""The benchmark's outputs: ``results.json``, ``results.md`` (tables for a person),
``pareto.png`` (utility vs identity leak, one point per defence) and ``examples.png``."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rl_mask.checkpoint import atomic_write_text  # noqa: E402
from rl_mask.owner.judge.privacy import ALPHA, BETA, PSNR_CEIL_DB, PSNR_FLOOR_DB  # noqa: E402

ATTACK_TITLES = {
    "whitebox": "white-box reconstruction",
    "blackbox": "black-box reconstruction",
    "mi-face": "MI-FACE",
    "gmi": "GAN-prior inversion (GMI)",
    "label-aware": "label-aware unmixing",
    "provenance": "provenance (what-if: needs a field that does not cross)",
}


def counted(defence: dict) -> dict:
    """The attacks that count for a defence's worst case (what-if attacks do not)."""
    return {a: c for a, c in defence["attacks"].items() if not c.get("what_if")}


def worst_case(defence: dict) -> tuple[str, dict]:
    """The attack with the highest identity leak (acc@1; ties: lowest score) on a defence."""
    cells = counted(defence)
    name = max(cells, key=lambda a: (cells[a]["acc1"], -cells[a]["score"]))
    return name, cells[name]


def min_score(defence: dict) -> float:
    return min(c["score"] for c in counted(defence).values())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(results: dict) -> str:
    d = results["data"]
    ev = results["evaluation_model"]
    budget = results["budget"]
    lines = [
        "# rl-mask privacy benchmark",
        "",
        f"Mode **{results['mode']}** on {d['root']}: {d['private_identities']} private identities "
        f"({d['private_train_images']} training / {d['private_test_images']} held-out faces), "
        f"{d['public_identities']} disjoint public identities ({d['public_images']} faces) for the attacker. "
        f"Chance identity leak acc@1 = {_pct(d['chance_acc1'])}. Seed {results['seed']}, {results['torch_threads']} torch threads, "
        f"wall time {results['wall_seconds'] / 60:.1f} min.",
        "",
        "Budget (every defence alike): " + ", ".join(f"{k}={v}" for k, v in budget.items()) + ".",
        "",
        f"Evaluation model (judge): {ev['architecture']}, trained on the clean private training faces; "
        f"held-out acc@1 {_pct(ev['test_acc'])}, acc@5 {_pct(ev['test_top5'])}.",
        "",
        "## Utility and worst-case privacy per defence",
        "",
        "| defence | identification acc@1 | verification acc | DP epsilon (delta) | worst attack | its leak acc@1 | privacy score (min over attacks) |",
        "|---|---|---|---|---|---|---|",
    ]
    for df in results["defences"]:
        u = df["utility"]
        eps = f"{df['dp']['epsilon']:.2f} ({df['dp']['delta']:g})" if df.get("dp") else "-"
        wname, wcell = worst_case(df)
        lines.append(
            f"| {df['name']} | {_pct(u['identification_acc'])} | {_pct(u['verification_acc'])} | {eps} | "
            f"{wname} | {_pct(wcell['acc1'])} | {min_score(df):.3f} |"
        )
    lines += [
        "",
        "## Every attack on every defence",
        "",
        "Identity leak by the evaluation model (acc@1, acc@5), image similarity to the private original "
        "(SSIM, PSNR), KNN distance in the judge's feature space to the nearest private face of that identity "
        "(and as a ratio of the typical distance between different people), and the combined privacy score "
        "(1 = nothing leaks).",
        "",
        "| defence | attack | n | acc@1 | acc@5 | SSIM | PSNR (dB) | KNN dist (ratio) | privacy score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for df in results["defences"]:
        for name, c in df["attacks"].items():
            lines.append(
                f"| {df['name']} | {name} | {c['n']} | {_pct(c['acc1'])} | {_pct(c['acc5'])} | {c['ssim']:.3f} | "
                f"{c['psnr']:.2f} | {c['knn']:.3f} ({c['knn_ratio']:.2f}) | {c['score']:.3f}{' (what-if, not counted)' if c.get('what_if') else ''} |"
            )
    b = results.get("baseline_mean_public_face")
    if b:
        lines.append(
            f"| *reference* | mean public face (do-nothing attacker) | {b['n']} | {_pct(b['acc1'])} | {_pct(b['acc5'])} | "
            f"{b['ssim']:.3f} | {b['psnr']:.2f} | {b['knn']:.3f} ({b['knn_ratio']:.2f}) | {b['score']:.3f} |"
        )
    lines += ["", "## How to read it", ""]
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
    lines += ["", "Plots: `pareto.png` (utility vs worst-case identity leak), `examples.png` (one sample per defence)."]
    return "\n".join(lines) + "\n"


def _guess_k(results: dict) -> str:
    for df in results["defences"]:
        c = df["attacks"].get("blackbox")
        if c:
            return str(c["attack"].get("guess_k", "?"))
    return "?"


def pareto_points(results: dict) -> list[tuple[str, float, float]]:
    """(defence, worst-case leak acc@1, identification acc@1)."""
    return [(df["name"], worst_case(df)[1]["acc1"], df["utility"]["identification_acc"]) for df in results["defences"]]


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Defences no other beats on both axes (lower leak and higher utility)."""
    front = []
    for name, leak, util in points:
        dominated = any((l2 <= leak and u2 >= util) and (l2 < leak or u2 > util) for n2, l2, u2 in points if n2 != name)
        if not dominated:
            front.append(name)
    return front


def plot_pareto(results: dict, path: Path) -> None:
    points = pareto_points(results)
    front = set(pareto_front(points))
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, leak, util in points:
        ax.scatter(leak, util, s=60, color="tab:red" if name in front else "tab:blue", zorder=3)
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
    ax.set_title(f"rl-mask benchmark ({results['mode']}): utility vs privacy")
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
