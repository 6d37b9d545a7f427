"""``rl-mask`` command line: train-fr (core), train (adaptive, Ray), benchmark, sweep (Ray Tune), export-masked;
using a trained model: encode (owner), embed (server), verify, identify, export-onnx.

Ray is imported only by the subcommands that need it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from rl_mask.checkpoint import CheckpointError
from rl_mask.config import STRATEGIES, ConfigError
from rl_mask.owner.data import FaceDataError
from rl_mask.use.files import InputError


def _add_common(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument("--config", help="YAML config file (see configs in the README)")
    p.add_argument("--data", help="face folder, one sub-folder per identity (default: ../shared/data/att_faces)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field, e.g. --set mask.cap=0.6")
    p.add_argument("--out", required=out_required, help="run folder to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _overrides(args: argparse.Namespace, extra: dict[str, object]) -> list[str]:
    out = []
    if args.data:
        out.append(f"data.root={json.dumps(str(Path(args.data).resolve()))}")
    for key, value in extra.items():
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    return out + list(args.set)


def cmd_train_fr(args: argparse.Namespace) -> int:
    from rl_mask.config import load_config
    from rl_mask.train_fr import train_fr

    cfg = load_config(
        args.config,
        _overrides(args, {"strategy.name": args.strategy, "strategy.k": args.k, "fr.steps": args.steps, "fr.device": args.device}),
    )
    summary = train_fr(cfg, args.out, progress=not args.quiet)
    keys = ("strategy", "identification_acc", "identification_top5", "verification_acc", "fr_steps", "wall_seconds")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    print(f"run folder: {Path(args.out).resolve()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trainers.checkpoints import holds_run
    from trainers.run_config import resolve_config
    from trainers.train import train

    if args.auto_resume:
        if args.resume or not args.out:
            raise ConfigError("--auto-resume goes with --out RUN_DIR (and without --resume)")
        if holds_run(Path(args.out).resolve()):  # a retried job: continue the run it started
            args.resume = args.out
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ConfigError("--resume RUN_DIR continues that folder; leave --out out or give the same folder")
    out = args.resume or args.out
    if not out:
        raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
    overrides = _overrides(args, {"rl.num_env_runners": args.num_env_runners, "rl.iterations": args.iterations})
    cfg = resolve_config(args.config, overrides, args.debug, args.resume)
    summary = train(cfg, out, address=args.address, resume=bool(args.resume), retry=args.auto_resume, debug=args.debug, progress=not args.quiet)
    keys = ("identification_acc", "verification_acc", "floor_held", "k_distribution", "k_entropy", "k_entropy_uniform", "env_steps", "fr_steps", "wall_seconds", "env_steps_per_s")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    print(f"run folder: {Path(out).resolve()}\nTensorBoard: tensorboard --logdir {summary['tensorboard']}")
    return 0


def _names(value: str | None) -> list[str] | None:
    """``a,b`` -> ``["a", "b"]`` (None when the flag was not given)."""
    # commas inside brackets belong to one name: fixed[k=4,flip=0.5,...]+key
    return None if value is None else [v.strip() for v in re.split(r",(?![^\[]*\])", value) if v.strip()]


def cmd_benchmark(args: argparse.Namespace) -> int:
    from rl_mask.bench.benchmark import run_benchmark
    from rl_mask.bench.report import judge_warning
    from rl_mask.config import load_config

    extra = {
        "benchmark.seeds": args.seeds,
        "benchmark.defences": _names(args.defences),
        "benchmark.attacks": _names(args.attacks),
    }
    cfg = load_config(args.config, _overrides(args, extra))
    deploy = None
    if args.adaptive_run or args.adaptive_paper_run:
        from trainers.deploy_policy import deploy_policy as deploy
    results = run_benchmark(cfg, args.out, quick=args.quick, adaptive_run=args.adaptive_run, adaptive_paper_run=args.adaptive_paper_run, deploy=deploy, progress=not args.quiet)
    print((Path(args.out) / "results.md").read_text())
    judge = results["evaluation_model"]
    if not judge["competent"]:
        print(judge_warning(judge), file=sys.stderr)
    print(f"wall time {results['wall_seconds'] / 60:.1f} min; results in {Path(args.out).resolve()}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from trainers.run_config import quick_policy_overrides
    from trainers.sweep import run_sweep

    if args.resume:
        if args.out or args.config or args.set or args.data or args.quick:
            raise ConfigError("--resume SWEEP_DIR continues that sweep with its own config.yaml and mode; give no --out, --config, --set, --data or --quick")
        run_sweep(None, args.resume, address=args.address, resume=True, progress=not args.quiet)
        out = args.resume
    else:
        if not args.out:
            raise ConfigError("--out SWEEP_DIR is required (or --resume SWEEP_DIR)")
        from rl_mask.config import load_config

        # --quick: the benchmark's quick budget for every measurement and debug mode's PPO budget for the policies (exact attacker)
        cfg = load_config(args.config, (quick_policy_overrides() if args.quick else []) + _overrides(args, {}))
        run_sweep(cfg, args.out, quick=args.quick, address=args.address, progress=not args.quiet)
        out = args.out
    print((Path(out) / "results.md").read_text())
    print(f"sweep folder: {Path(out).resolve()}")
    return 0


def cmd_export_masked(args: argparse.Namespace) -> int:
    from rl_mask.owner.export import export_masked

    meta = export_masked(args.run, args.out, batches=args.batches, data_root=args.data)
    print(json.dumps({k: meta[k] for k in ("samples", "batches", "exact", "input_kind", "how")}, indent=2))
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from rl_mask.use.encode import encode_to_files

    out, record, rows = encode_to_files(args.run, args.images, args.out)
    print(f"owner side: encoded {rows} images with run {Path(args.run).resolve()}")
    print(f"  {out.resolve()}: the ProtectedProbes message (inputs only): give this to the server")
    print(f"  {record.resolve()}: which image each row is: keep this")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from rl_mask.use.embed import embed_file

    rows = embed_file(args.model, args.inputs, args.out, args.device)
    print(f"server side: embedded {rows} probes with {Path(args.model).resolve()} -> {Path(args.out).resolve()}")
    return 0


def _print_report(report: dict, keys: tuple[str, ...], out: str | None, files: str) -> int:
    print(json.dumps({k: report[k] for k in keys}, indent=2))
    if out:
        print(f"wrote {files} to {Path(out).resolve()}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from rl_mask.use.protocols import verify

    keys = ("accuracy", "accuracy_std", "folds", "tar_at_far_0.01", "tar_at_far_0.001", "far_resolution", "pairs", "images")
    return _print_report(verify(args.run, args.pairs, args.images, args.out), keys, args.out, VERIFY_FILES)


def cmd_identify(args: argparse.Namespace) -> int:
    from rl_mask.use.protocols import identify

    keys = ("top1", "top5", "chance_top1", "gallery_identities", "gallery_images", "probes")
    return _print_report(identify(args.run, args.gallery, args.probes, args.out), keys, args.out, IDENTIFY_FILES)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from rl_mask.use.onnx_export import export_onnx

    print(json.dumps(export_onnx(args.model, args.out), indent=2))
    return 0


VERIFY_FILES, IDENTIFY_FILES = "verify.json and roc.png", "identify.json and cmc.png"


def _protocol_parser(sub, name: str, help: str, files: str) -> argparse.ArgumentParser:
    """A protocol command: a run (both sides in one process) and an optional report folder."""
    p = sub.add_parser(name, help=f"{help} (both sides in one process)")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR", help=f"write {files} here")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rl-mask", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-fr", help="train the FR network under one fixed defence (no Ray)")
    _add_common(p)
    p.add_argument("--strategy", choices=list(STRATEGIES))
    p.add_argument("--k", type=int, help="k for --strategy fixed-k")
    p.add_argument("--steps", type=int, help="FR training steps")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_train_fr)

    p = sub.add_parser("train", help="adaptive strategy: RLlib PPO env runners + the shared FR actor on Ray")
    _add_common(p, out_required=False)
    p.add_argument("--debug", action="store_true", help="local single-node mode: env + learner in one process, small batches")
    p.add_argument("--address", help="Ray cluster to join: auto or HOST:PORT (default: start a local Ray)")
    p.add_argument("--num-env-runners", type=int, help="PPO env runner actors (cluster mode)")
    p.add_argument("--iterations", type=int, help="PPO iterations")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its latest checkpoint")
    p.add_argument("--auto-resume", action="store_true", help="with --out: resume RUN_DIR if it holds a run, else start it (for jobs that are retried)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("benchmark", help="train every defence, run every attack; write results.json, results.md, pareto.png")
    _add_common(p)
    p.add_argument("--quick", action="store_true", help="the small budgets of benchmark.quick (about 20 min on 2 CPU cores)")
    p.add_argument("--seeds", type=int, help="repeat training, attacks and judge with N derived seeds (benchmark.seeds); N >= 2 gives t-intervals")
    p.add_argument("--defences", metavar="A,B", help="comma-separated defences (overrides benchmark.defences)")
    p.add_argument("--attacks", metavar="A,B", help="comma-separated attacks (overrides benchmark.attacks)")
    p.add_argument("--adaptive-run", metavar="RUN_DIR", help="an rl-mask train output: its policy is deployed on a fresh FR network for the adaptive row (else: k distribution from config, no policy)")
    p.add_argument("--adaptive-paper-run", metavar="RUN_DIR", help="an rl-mask train output trained with rl.reward=paper: the adaptive-paper row")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("sweep", help="policy trials over rl.leak_lambda and the fixed knob grid as one Ray Tune experiment; both fronts measured by the benchmark")
    _add_common(p, out_required=False)
    p.add_argument("--quick", action="store_true", help="benchmark.quick budget for every measurement, debug mode's PPO budget for every policy")
    p.add_argument("--address", help="Ray cluster to join: auto or HOST:PORT (default: start a local Ray)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="run the trials of an interrupted sweep that have no result yet")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("export-masked", help="write a run's protected training tensors with labels and provenance (.npz)")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="an rl-mask train-fr or train output folder")
    p.add_argument("--out", required=True, metavar="FILE.npz")
    p.add_argument("--batches", type=int, help="training batches to export (default: one epoch)")
    p.add_argument("--data", help="face folder, if it moved since the run")
    p.set_defaults(func=cmd_export_masked)

    p = sub.add_parser("encode", help="owner side: aligned face images -> the probe message the server may see (.npz), names kept in a .owner.json beside it")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="the run whose encoding (mask) to use")
    p.add_argument("--images", required=True, metavar="DIR_OR_LIST", help="a folder of images (searched recursively) or a text file with one image path per line")
    p.add_argument("--out", required=True, metavar="PROBES.npz")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("embed", help="server side: probe message -> embeddings (.npz); needs only the model file")
    p.add_argument("--model", required=True, metavar="FR.pt")
    p.add_argument("--in", dest="inputs", required=True, metavar="PROBES.npz")
    p.add_argument("--out", required=True, metavar="EMBEDDINGS.npz")
    p.add_argument("--device", default="cpu", help="cpu, auto, cuda or cuda:N")
    p.set_defaults(func=cmd_embed)

    p = _protocol_parser(sub, "verify", "LFW pairs.txt verification: 10-fold accuracy, TAR at FAR, ROC", VERIFY_FILES)
    p.add_argument("--pairs", required=True, metavar="PAIRS.txt", help="LFW format: header 'FOLDS N', then 'name n1 n2' and 'name1 n1 name2 n2' lines")
    p.add_argument("--images", required=True, metavar="DIR", help="one folder per person: DIR/NAME/NAME_0001.jpg (LFW) or DIR/NAME/1.pgm")
    p.set_defaults(func=cmd_verify)

    p = _protocol_parser(sub, "identify", "gallery/probe identification: top-1, top-5, CMC", IDENTIFY_FILES)
    p.add_argument("--gallery", required=True, metavar="DIR_OR_LIST", help="enrolled images, one folder per person")
    p.add_argument("--probes", required=True, metavar="DIR_OR_LIST", help="images to identify, in folders named as their gallery identity")
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("export-onnx", help="the FR embedding network as ONNX, checked against torch with onnxruntime (needs the onnx extra)")
    p.add_argument("--model", required=True, metavar="FR.pt")
    p.add_argument("--out", required=True, metavar="FR.onnx")
    p.set_defaults(func=cmd_export_onnx)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Ray reads its auth mode once, when it is imported (below, in the subcommands): token auth
    # for every Ray this command starts or joins, unless the caller chose otherwise.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    # Run folders hold face-derived data: every file this command (and a local Ray it starts) writes is owner-only.
    os.umask(0o077)
    try:
        return args.func(args)
    except (ConfigError, FaceDataError, CheckpointError, InputError) as exc:
        print(f"rl-mask: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # trainers.shutdown.Interrupted carries the signal
        print(f"rl-mask: {exc or 'interrupted'}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
