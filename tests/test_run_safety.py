"""The run folder and the logs as an attacker or an operator meets them: a stop that always
checkpoints, no recognisable private face in TensorBoard, owner-only files, nothing lost
through ``--out``. Each run is a real ``rl-mask train`` process."""

import io
import json
import math
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import privacy_helpers as H
from rl_mask.attacks import AttackTarget, WhiteBoxReconstruction
from rl_mask.attacks.eval_door import eval_message_target
from rl_mask.config import Config, default_data_root, load_config
from rl_mask.mask.defences import HybridDefence
from rl_mask.mask.settings import MaskSettings
from rl_mask.owner.defences import build_defence
from rl_mask.owner.judge.privacy import any_of_k_hits
from rl_mask.owner.recorder import boundary_dir, read_boundary
from rl_mask.owner.stream import prepare_data
from rl_mask.protocol import ProtectedBatch
from trainers.tensorboard import image_grid, masked_examples

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parent.parent
#: Debug mode at sizes that only exercise it (--set comes after --debug's own overrides).
TINY = {
    "fr.batch_size": 16, "rl.train_batch_size": 16, "rl.minibatch_size": 8, "rl.num_epochs": 1, "rl.horizon": 4,
    "rl.eval_every": 8, "rl.policy_eval_steps": 8, "rl.judge_steps": 5, "rl.attacker_warmup_steps": 2,
    "rl.attacker_rows": 8, "rl.attacker_batch_size": 4,
}


def sets(values: dict) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def cli(*args, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainers.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- TensorBoard, permissions


def tiles(grid: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    h, w = grid.shape[0] // rows, grid.shape[1] // cols
    return [grid[r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(rows) for c in range(cols)]


def best_match(tile: np.ndarray, views: np.ndarray) -> float:
    """Highest Pearson correlation of ``tile`` with any of ``views`` ``[N, H, W]``."""
    a = (tile - tile.mean()) / (tile.std() + 1e-8)
    v = views.reshape(len(views), -1)
    v = (v - v.mean(1, keepdims=True)) / (v.std(1, keepdims=True) + 1e-8)
    return float((v @ a.ravel()).max() / a.size)


def mask_only_views(cfg: Config, images: torch.Tensor) -> np.ndarray:
    """What a face looks like after channel removal alone, through the inverse DCT."""
    mask = build_defence(cfg, "adaptive", k_choices=cfg.rl.k_choices).mask
    return mask.to_pixels(mask.transform(images))[:, 0].numpy()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> Path:
    """One ``rl-mask train --debug`` run with the default protection (tiny sizes), shared by
    the tests that read what it left: logs, permissions, the messages it sent."""
    env = dict(os.environ)
    env.setdefault("RL_MASK_DATA", default_data_root())
    run = tmp_path_factory.mktemp("default") / "run"
    proc = cli("train", "--debug", "--out", str(run), "--iterations", "1", "--quiet", *sets({**TINY, "rl.record_masked_batches": 12}), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


def test_default_debug_run_logs_public_faces_only_and_keeps_its_folder_owner_only(default_run):
    run = default_run
    # owner-only: the folder, and every file and folder in it (faces-derived data all)
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    loose = [str(p.relative_to(run)) for p in run.rglob("*") if stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert not loose, loose
    assert (run / "boundary").is_dir() and (run / "judge.pt").is_file()  # the files that hold face-derived data exist

    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["faces/public/protected"]
    cfg = load_config(run / "config.yaml")
    grid = np.asarray(Image.open(io.BytesIO(acc.Images("faces/public/protected")[0].encoded_image_string)).convert("L"), dtype=np.float64)
    rows = 1 + len(cfg.rl.k_choices)
    logged = tiles(grid, rows, 8)
    assert grid.shape == (rows * cfg.data.height, 8 * cfg.data.width)
    data = prepare_data(cfg)
    private = mask_only_views(cfg, torch.cat([data.train_images, data.val_images, data.test_images]))
    public = mask_only_views(cfg, data.split.public.float_images())
    # the first row is public faces after channel removal: each tile matches one of them...
    assert min(best_match(t, public) for t in logged[:8]) > 0.98
    # ...and no tile, of any row, is any private face's protected view
    closest_private = max(best_match(t, private) for t in logged)
    assert closest_private < 0.9, closest_private
    # the detector sees a private face where there is one: the same grid made of private faces
    # (what rl.log_private_faces logs), scaled and quantised as TensorBoard stores it
    control = image_grid(masked_examples(cfg, data.train_images, data.train_labels, cfg.rl.k_choices))[0].mul(255).round().numpy()
    assert min(best_match(t, private) for t in tiles(control, rows, 8)[:8]) > 0.98


# ----------------------------------------------------------------------------- what crosses

#: Decoder steps of the white-box attacks below: on the k = 1 messages, enough to restore most
#: channel-removed faces (the control: 83 of 140 named at 400 steps, 37 at 200); on the training
#: batches (one decoder per setting) fewer, for the suite's time.
DECODER_STEPS = 400
TRAIN_DECODER_STEPS = 200


def binomial_upper(n: int, p: float, alpha: float = 1e-3) -> int:
    """The smallest h with P(Binomial(n, p) > h) < alpha: hits a do-nothing attacker exceeds
    by chance only that rarely."""
    total = 0.0
    for h in range(n + 1):
        total += math.comb(n, h) * p**h * (1 - p) ** (n - h)
        if 1 - total < alpha:
            return h
    return n


def judged_hits(images: torch.Tensor, row_labels: torch.Tensor) -> int:
    """Rows whose reconstruction the judge (trained on the private faces) names as one of the
    row's identities."""
    return int(any_of_k_hits(H.judge().model, images, row_labels).sum())


def k1_leak(public_defence, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
    """Judged hits on k = 1 messages: through the public inverse transform, and through a
    white-box decoder trained on public faces encoded as those messages are."""
    target = eval_message_target(public_defence, inputs, labels, None, H.data().num_classes)
    rec = WhiteBoxReconstruction(steps=DECODER_STEPS, batch_size=16, seed=5).fit(H.public(), target.defence).attack(target)
    return {"inverse": judged_hits(public_defence.to_pixels(inputs), labels[:, None]), "decoder": judged_hits(rec.images, labels[:, None])}


def test_what_a_default_run_sends_shows_no_face_to_the_public_inverse_and_far_fewer_to_the_decoder(default_run, tmp_path, cli_env):
    """Every message a default run sends (training batches sent with flips; its validation and
    test faces never cross: the owner scores them itself) and the inference probes of those
    held-out faces (``rl-mask encode``, as if the owner embedded every one through the server),
    attacked with the public inverse transform and the white-box decoder,
    scored by a judge trained on the private faces, against what the do-nothing attacker (the
    mean public face) gets by chance:

    - the flipped training batches: no more than chance, through the decoder;
    - the k = 1 messages (keyed, flipped as the training rows): no more than chance through the
      inverse transform; through the decoder **above chance** (measured 22 of 140 named where
      chance gives 7: the map of each block's energy survives the key and the flips, README),
      but at most half of what the same decoder names when the same faces are sent as channel
      removal alone (the control: 83 of 140)."""
    torch.manual_seed(0)  # the attacker's own flips in its simulations
    run = default_run
    cfg = load_config(run / "config.yaml")
    owner = build_defence(cfg, "adaptive", k_choices=cfg.rl.k_choices)
    assert cfg.mask.key == "channels" and owner.eval_flip == 0.5 and owner.mask.key is not None  # the defaults
    data = prepare_data(cfg)
    assert torch.equal(data.train_labels, H.data().train_labels) and torch.equal(data.test_images, H.data().test_images)
    classes = data.num_classes
    public = owner.public()  # what the attacker can run: no key
    mean_face = H.public().mean(0, keepdim=True)

    # what the run sent: training batches only (each env's record), no held-out face
    assert {p.name for p in boundary_dir(run).iterdir()} and all(p.name.startswith("env-") and p.suffix == ".pt" for p in boundary_dir(run).iterdir())
    # the k = 1 messages: the probes `rl-mask encode` writes of the validation and test faces, and of the test faces again
    probes = []
    for name, paths in (("held-out", data.split.private_val.paths + data.split.private_test.paths), ("again", data.split.private_test.paths)):
        listing = tmp_path / f"{name}.txt"
        listing.write_text("\n".join(paths) + "\n")
        proc = cli("encode", "--run", str(run), "--images", str(listing), "--out", str(tmp_path / f"{name}.npz"), env=cli_env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        with np.load(tmp_path / f"{name}.npz", allow_pickle=False) as z:
            probes.append(torch.from_numpy(z["inputs"]))
    inputs = torch.cat(probes)
    labels = torch.cat([data.split.private_val.labels, data.split.private_test.labels, data.split.private_test.labels])
    assert inputs.shape[0] == labels.shape[0] and not torch.equal(probes[0][-len(probes[1]) :], probes[1])  # flips drawn afresh for every message
    n = len(labels)
    reference = judged_hits(mean_face.expand(n, -1, -1, -1), labels[:, None])
    bound = binomial_upper(n, max(reference / n, 1.0 / classes))
    leak = k1_leak(public, inputs, labels)
    assert leak["inverse"] <= bound, (leak, reference, bound, n)

    # training batches the policy sent with flips, each attacked by a decoder for its settings
    sent = [m for m in read_boundary(run) if json.loads(m["owner_settings"])["flip"] > 0]
    assert sent, "the policy sent no flipped batch among the recorded ones"
    hits = ref_hits = rows = 0
    attacked = _distinct(sent)[:2]  # at most two decoders: the suite's time
    for settings in attacked:
        batches = [m for m in sent if json.loads(m["owner_settings"]) == settings]
        simulated = HybridDefence("simulated", public.mask, [settings["k"]], settings_pool=[MaskSettings(**settings)])
        crossed = [ProtectedBatch(m["inputs"], m["labels"], m["weights"]) for m in batches]
        target = AttackTarget(simulated, crossed, None, classes)
        rec = WhiteBoxReconstruction(steps=TRAIN_DECODER_STEPS, batch_size=16, seed=6).fit(H.public(), simulated).attack(target)
        row_labels = torch.cat([m["owner_labels"] for m in batches])
        hits += judged_hits(rec.images, row_labels)
        ref_hits += judged_hits(mean_face.expand(len(row_labels), -1, -1, -1), row_labels)
        rows += len(row_labels)
    k = max(s["k"] for s in attacked)
    assert hits <= binomial_upper(rows, max(ref_hits / rows, k / classes)), (hits, ref_hits, rows)

    # the control: the same held-out faces sent as channel removal alone (no key, no flips)
    bare = load_config(run / "config.yaml", ["mask.key=none", "mask.eval_flip=0.0"])
    plain = build_defence(bare, "mask")
    control = k1_leak(plain.public(), plain.encode_eval(torch.cat([data.val_images, data.test_images, data.test_images])), labels)
    assert control["decoder"] > 2 * bound, (control, bound)
    assert 2 * leak["decoder"] <= control["decoder"], (leak, control, bound)


def _distinct(messages: list[dict]) -> list[dict]:
    """The distinct settings of recorded messages, in first-sent order."""
    out: list[dict] = []
    for m in messages:
        s = json.loads(m["owner_settings"])
        if s not in out:
            out.append(s)
    return out


# ----------------------------------------------------------------------------- stopping


def tiny_ray_config(path: Path) -> Path:
    rl = {"num_env_runners": 1, "num_cpus_per_env_runner": 1, "horizon": 4, "train_batch_size": 16, "minibatch_size": 8, "num_epochs": 1,
          "iterations": 60, "checkpoint_every": 2, "image_every": 100, "eval_every": 8, "policy_eval_steps": 8,
          "judge_steps": 5, "attacker_warmup_steps": 2, "attacker_rows": 8, "attacker_batch_size": 4}
    path.write_text(yaml.safe_dump({"fr": {"batch_size": 16}, "rl": rl}))
    return path


def latest_iteration(run: Path) -> int:
    return int((run / "checkpoints" / "latest").read_text().split("_")[1])


def stop_run_midway(cmd: list[str], run: Path, env: dict, sig: signal.Signals, after: int) -> str:
    """Start ``cmd`` in a session of its own, wait for a checkpoint past iteration ``after``,
    signal it as ``timeout`` (SIGTERM to the driver, passed on to its group) or Ctrl-C (SIGINT
    to the whole group) would, and check that it stopped cleanly; returns its output."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not ((run / "checkpoints" / "latest").is_file() and latest_iteration(run) > after):
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-4000:] if proc.poll() is not None else "timed out"
            time.sleep(0.2)
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family if p.is_running())
        assert "raylet" in names and "FRActorImpl" in names and "InflightEnvRunner" in names
        time.sleep(1.5)  # well into the next iterations
        if sig == signal.SIGTERM:
            proc.send_signal(signal.SIGTERM)  # timeout passes it on to its whole process group, as when it expires
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, out[-4000:]
    done = latest_iteration(run)
    assert done > after and f"stopped after iteration {done}" in out and f"rl-mask: stopped by {sig.name}" in out, out[-4000:]
    assert json.loads((run / "checkpoints" / f"iter_{done:06d}" / "state.json").read_text())["iteration"] == done
    assert not (run / "summary.json").exists()
    _, alive = psutil.wait_procs(family, timeout=60)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [" ".join(p.cmdline()) for p in alive]
    return out


def test_a_stop_to_the_whole_process_group_checkpoints_and_resume_continues(tmp_path, cli_env):
    """``timeout`` and Ctrl-C signal the driver's whole process group: the local Ray is not in
    it, so the iteration under way finishes, a checkpoint is written, no process of the run is
    left, and ``--resume`` goes on from that checkpoint. One run meets both: ``timeout`` stops
    it, the resumed run is stopped by Ctrl-C, and a last resume finishes it."""
    run = tmp_path / "run"
    train = [sys.executable, "-m", "trainers.cli", "train", "--quiet"]
    stop_run_midway(["timeout", "-s", "TERM", "3600", *train, "--out", str(run), "--config", str(tiny_ray_config(tmp_path / "c.yaml"))], run, cli_env, signal.SIGTERM, after=1)
    first = latest_iteration(run)
    stop_run_midway([*train, "--resume", str(run)], run, cli_env, signal.SIGINT, after=first)
    done = latest_iteration(run)

    resumed = cli("train", "--resume", str(run), "--iterations", str(done + 1), "--quiet", env=cli_env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == done + 1 and summary["env_steps"] == 16 * (done + 1)
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("mask/k_mean")] == [16 * i for i in range(1, done + 2)]  # nothing repeated or lost across two stops


# ----------------------------------------------------------------------------- --out


def test_out_never_overwrites_or_deletes_what_it_did_not_write(tmp_path, cli_env):
    # train-fr over an existing run: refused, its files untouched
    first = tmp_path / "fr-run"
    ok = cli("train-fr", "--out", str(first), "--steps", "2", "--quiet", "--set", "fr.eval_every=2", env=cli_env)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    again = cli("train-fr", "--out", str(first), "--steps", "2", "--quiet", env=cli_env)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert again.stderr.startswith(f"rl-mask: error: --out {first} is not empty (it holds checkpoints, config.yaml, fr.pt")
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    # train on a folder that is not a run but holds files: refused, nothing deleted
    used = tmp_path / "used"
    (used / "boundary").mkdir(parents=True)
    (used / "boundary" / "mine.txt").write_text("keep")
    (used / "notes.txt").write_text("keep")
    proc = cli("train", "--debug", "--out", str(used), "--quiet", env=cli_env)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"rl-mask: error: --out {used} is not empty (it holds boundary, notes.txt); a new run goes into a new or empty folder"]
    assert (used / "boundary" / "mine.txt").read_text() == "keep" and (used / "notes.txt").read_text() == "keep"
    # --out naming a file: one line, for every command that writes a run folder
    file = tmp_path / "a-file"
    file.write_text("x")
    for command in (["train", "--debug"], ["train-fr"], ["benchmark", "--quick"]):
        proc = cli(*command, "--out", str(file), "--quiet", env=cli_env)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"rl-mask: error: --out {file} is a file, not a folder"], (command, proc.stderr[-2000:])
    assert file.read_text() == "x"
