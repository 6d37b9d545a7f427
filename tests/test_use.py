"""Using a trained model (issue 21), on a short real train-fr run on the AT&T faces: LFW-format
verification of held-out faces, identification of identities never in training, encode and
embed as two processes (the server's cannot read the faces), ONNX against torch, bad input."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from face_guard import FACE_GUARD
from rl_mask.checkpoint import load_checkpoint, save_checkpoint
from rl_mask.mask.defences import HybridDefence
from rl_mask.mask.masking import HybridMask
from rl_mask.owner.data import load_split
from rl_mask.owner.messages import probe_set
from rl_mask.owner.stream import prepare_data
from rl_mask.run_folder import read_run
from rl_mask.server.trainer import build_model
from rl_mask.use import EmbeddingServer, OwnerEncoder, compare, load_embeddings, save_probes
from rl_mask.use.held_out import final_test_set
from rl_mask.use.protocols import enrolment_split, read_pairs, write_pairs

RUN_STEPS = 200  # about 35 s on 2 cores; verification of held-out faces measured 0.87 (chance 0.5)


def cli(args, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "trainers.cli", *args], env=env, capture_output=True, text=True, timeout=1800)  # a loaded machine
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def env():
    from rl_mask.config import default_data_root

    return {**os.environ, "RL_MASK_DATA": os.environ.get("RL_MASK_DATA", default_data_root())}


@pytest.fixture(scope="module")
def run(tmp_path_factory, env):
    """A debug run: the mask defence, a few hundred FR steps on CPU."""
    out = tmp_path_factory.mktemp("use") / "run"
    cli(["train-fr", "--strategy", "mask", "--steps", str(RUN_STEPS), "--set", f"fr.eval_every={RUN_STEPS}", "--out", str(out), "--quiet"], env)
    return out


@pytest.fixture(scope="module")
def split(run):
    return load_split(read_run(run).cfg.data)


def link_faces(faces, folder):
    """``folder/IDENTITY/N.pgm``: links to the faces, which stay in ../shared."""
    for path, label in zip(faces.paths, faces.labels.tolist()):
        target = folder / faces.identities[label] / os.path.basename(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    return folder


def test_verification_of_held_out_faces_in_lfw_format(run, split, att_root, env, tmp_path):
    pairs = tmp_path / "pairs.txt"
    assert write_pairs(split.private_test, pairs) == 120
    lines = pairs.read_text().splitlines()
    assert lines[0] == "10\t6" and {len(line.split("\t")) for line in lines[1:]} == {3, 4}
    parsed = read_pairs(pairs)
    assert parsed.same.sum() == 60 and list(np.bincount(parsed.fold)) == [12] * 10
    proc = cli(["verify", "--run", str(run), "--pairs", str(pairs), "--images", str(att_root), "--out", str(tmp_path / "v")], env)
    assert "one process" in proc.stderr
    report = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert report["folds"] == 10 and report["pairs"] == 120 and report["images"] == 60
    assert report["accuracy"] > 0.7, report  # chance is 0.5
    assert 0 < report["tar_at_far_0.001"] <= report["tar_at_far_0.01"] <= 1
    assert (tmp_path / "v" / "roc.png").stat().st_size > 1000


def test_identification_of_identities_never_trained(run, split, att_root, env, tmp_path):
    public = split.public
    assert not set(public.identities) & set(split.private_train.identities)
    enrolled, probing = enrolment_split(public, 3)
    gallery, probes = link_faces(enrolled, tmp_path / "gallery"), link_faces(probing, tmp_path / "probes")
    cli(["identify", "--run", str(run), "--gallery", str(gallery), "--probes", str(probes), "--out", str(tmp_path / "i")], env)
    report = json.loads((tmp_path / "i" / "identify.json").read_text())
    assert report["gallery_identities"] == 20 and report["gallery_images"] == 60 and report["probes"] == 140
    assert report["top1"] > 10 * report["chance_top1"], report  # 0.5 against chance 0.05
    assert report["top1"] <= report["top5"] <= report["cmc"][-1] == 1.0
    assert (tmp_path / "i" / "cmc.png").is_file()


SERVER_EMBED = FACE_GUARD + """
from trainers.cli import main
sys.exit(main(["embed", "--model", sys.argv[2], "--in", sys.argv[3], "--out", sys.argv[4]]))
"""


def test_encode_and_embed_in_two_processes(run, split, att_root, env, tmp_path):
    """The owner's process encodes; the server's, which cannot open the face folder, embeds."""
    test = split.private_test
    listing = tmp_path / "probes.txt"
    listing.write_text("\n".join(test.paths) + "\n")
    cli(["encode", "--run", str(run), "--images", str(listing), "--out", str(tmp_path / "probes.npz")], env)
    with np.load(tmp_path / "probes.npz", allow_pickle=False) as z:
        assert z.files == ["inputs"] and z["inputs"].dtype == np.float32
        sent = torch.from_numpy(z["inputs"])
    assert json.loads((tmp_path / "probes.owner.json").read_text())["names"] == list(test.paths)
    assert str(att_root) not in (tmp_path / "probes.npz").read_bytes().decode("latin-1")
    # The probes are the encoding the run scored its held-out test faces in (on the owner's side).
    run_folder = read_run(run)
    assert torch.allclose(sent, final_test_set(run_folder.defence, prepare_data(run_folder.cfg)).inputs, atol=1e-6)

    script = tmp_path / "server.py"
    script.write_text(SERVER_EMBED)
    proc = subprocess.run([sys.executable, str(script), str(att_root), str(run / "fr.pt"), str(tmp_path / "probes.npz"), str(tmp_path / "emb.npz")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = load_embeddings(tmp_path / "emb.npz").embeddings
    # The same numbers as the Python API in one process.
    owner = OwnerEncoder.from_run(run)
    probes, entries = owner.encode_files(listing)
    local = EmbeddingServer(run / "fr.pt").embed(probes).embeddings
    assert torch.allclose(served, local, atol=1e-5)
    # Same-person pairs score higher than different-person pairs on average.
    scores = compare(served[:, None], served[None])
    same = test.labels[:, None] == test.labels[None]
    off_diagonal = ~torch.eye(len(test), dtype=torch.bool)
    assert scores[same & off_diagonal].mean() > scores[~same].mean() + 0.2


def test_onnx_export_equals_torch(run, split, env, tmp_path):
    pytest.importorskip("onnxruntime")
    from rl_mask.use.onnx_export import onnx_embeddings

    proc = cli(["export-onnx", "--model", str(run / "fr.pt"), "--out", str(tmp_path / "fr.onnx")], env)
    assert json.loads(proc.stdout)["max_abs_diff"] <= 1e-4
    owner = OwnerEncoder.from_run(run)
    faces = split.public.float_images()[:37]  # another batch size than the export's example
    probes = owner.encode(faces)
    expected = EmbeddingServer(run / "fr.pt").embed(probes).embeddings
    got = onnx_embeddings((tmp_path / "fr.onnx").read_bytes(), probes.inputs)
    assert got.shape == expected.shape and (got - expected).abs().max() < 1e-4


def _bad_pairs_empty(tmp_path, run, att_root):
    (tmp_path / "pairs.txt").write_text("")
    return ["verify", "--run", str(run), "--pairs", str(tmp_path / "pairs.txt"), "--images", str(att_root), "--out", str(tmp_path / "out")], "is empty"


def _bad_pairs_missing_image(tmp_path, run, att_root):
    (tmp_path / "pairs.txt").write_text("1\t1\ns01\t1\t11\ns01\t2\ts02\t3\n")
    return ["verify", "--run", str(run), "--pairs", str(tmp_path / "pairs.txt"), "--images", str(att_root), "--out", str(tmp_path / "out")], "no image 11 of s01"


def _bad_not_an_image(tmp_path, run, att_root):
    (tmp_path / "faces" / "x").mkdir(parents=True)
    (tmp_path / "faces" / "x" / "notes.png").write_text("not a face")
    return ["encode", "--run", str(run), "--images", str(tmp_path / "faces"), "--out", str(tmp_path / "out")], "notes.png"


def _bad_image_size(tmp_path, run, att_root):
    (tmp_path / "faces" / "x").mkdir(parents=True)
    Image.fromarray(np.full((20, 16), 128, np.uint8)).save(tmp_path / "faces" / "x" / "tiny.png")
    return ["encode", "--run", str(run), "--images", str(tmp_path / "faces"), "--out", str(tmp_path / "out")], "tiny.png is 16x20 (width x height); this run takes aligned face crops of 96x112"


def _bad_probes_of_another_mask(tmp_path, run, att_root):
    other = HybridDefence("mask", HybridMask(removed_channels=(0, 1, 2)), [1])
    save_probes(probe_set(other, torch.zeros(2, 1, 112, 96)), tmp_path / "probes.npz")
    return ["embed", "--model", str(run / "fr.pt"), "--in", str(tmp_path / "probes.npz"), "--out", str(tmp_path / "out")], "probes.npz are encoded as [61, 14, 12]"


def _bad_model_of_another_shape(tmp_path, run, att_root):
    """The run folder with an fr.pt of another data shape (64x64 faces) in place of its own."""
    shutil.copytree(run, tmp_path / "run")
    meta = {**load_checkpoint(run / "fr.pt")["meta"], "input_shape": [58, 8, 8]}
    save_checkpoint({"state_dict": build_model(meta).state_dict(), "meta": meta}, tmp_path / "run" / "fr.pt")
    listing = tmp_path / "faces.txt"
    listing.write_text(str(att_root / "s01" / "1.pgm") + "\n")
    return ["encode", "--run", str(tmp_path / "run"), "--images", str(listing), "--out", str(tmp_path / "out")], "fr.pt takes freq [58, 8, 8], but this run's config encodes faces as freq [58, 14, 12]"


@pytest.mark.parametrize("case", [_bad_pairs_empty, _bad_pairs_missing_image, _bad_not_an_image, _bad_image_size, _bad_probes_of_another_mask, _bad_model_of_another_shape])
def test_bad_input_is_named_and_nothing_is_written(case, run, att_root, env, tmp_path):
    args, message = case(tmp_path, run, att_root)
    proc = cli(args, env, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.strip().startswith("rl-mask: error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.owner.json").exists()
