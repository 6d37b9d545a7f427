"""The owner-held key: orthogonal, reproducible from its seed, on every message that crosses,
never in what an attacker runs; and the FR network still learns under it."""


import pytest
import torch

import privacy_helpers as H
from rl_mask.attacks.eval_door import EvalMessageView
from rl_mask.bench.benchmark import attacked_batches, grid_defence, with_owner_options
from rl_mask.config import Config, ConfigError, load_config, save_config
from rl_mask.mask.settings import MaskSettings
from rl_mask.owner.defences import build_defence, hybrid_defence
from rl_mask.owner.key import OwnerKey
from rl_mask.owner.messages import attacker_setup, probe_set, training_setup
from rl_mask.owner.stream import TrainingStream, prepare_data
from rl_mask.protocol import AttackerSetup, TrainingSetup
from rl_mask.train_fr import train_fr


def _cfg(**mask) -> Config:
    cfg = Config()
    for k, v in mask.items():
        setattr(cfg.mask, k, v)
    return cfg.validate()


def test_key_is_orthogonal_invertible_and_reproducible_from_its_seed():
    x = torch.randn(5, 58, 4, 3)
    for kind in ("channels", "positions"):
        key = OwnerKey(7, kind)
        y = key.apply(x)
        assert not torch.allclose(y, x, atol=1e-2)
        assert torch.allclose(key.invert(y), x, atol=1e-5)
        # orthogonal per block position: every block's energy is kept (the public invariant)
        assert torch.allclose(y.pow(2).sum(1), x.pow(2).sum(1), rtol=1e-4)
        assert torch.equal(OwnerKey(7, kind).apply(x), y)  # the seed alone re-creates it
        assert not torch.allclose(OwnerKey(8, kind).apply(x), y, atol=1e-2)
    q = OwnerKey(7, "positions").matrices(58, 4, 3)
    assert q.shape == (4 * 3, 58, 58) and not torch.allclose(q[0], q[1])
    assert torch.allclose(q[3] @ q[3].T, torch.eye(58, dtype=q.dtype), atol=1e-10)


def test_zeroing_dct_channels_under_the_key_is_removal_in_the_dct_basis_for_every_kind():
    """``zero_channels`` (the rotation keys' rank-|E| projection) equals undoing the key,
    zeroing the channels and keying again, and leaves the other channels as they were."""
    x = torch.randn(6, 58, 4, 3)
    extra = torch.tensor([0, 1, 2, 3, 29])
    for kind in ("channels", "positions", "scramble", "dense"):
        key = OwnerKey(11, kind)
        zeroed = key.zero_channels(x, extra)
        assert torch.allclose(zeroed, key.apply(key.invert(x).index_fill(1, extra, 0.0)), atol=1e-5), kind
        dct = key.invert(zeroed)
        assert dct[:, extra].abs().max() < 1e-5, kind
        kept = torch.ones(58, dtype=torch.bool).index_fill(0, extra, False)
        assert torch.allclose(dct[:, kept], key.invert(x)[:, kept], atol=1e-5), kind


def test_every_message_carries_the_key_and_attackers_get_the_public_view(att_root):
    cfg = _cfg(key="channels")
    data = prepare_data(cfg)
    keyed = build_defence(cfg, "mask")
    key = keyed.mask.key
    public = keyed.public()
    assert public.mask.key is None and keyed.mask.key is key  # public() leaves the owner's defence as it was
    assert "key" in keyed.describe() and "seed" not in str(keyed.describe()["key"])
    # inference probes (the owner's own validation and test encodings use the same encode_eval)
    for images in (data.val_images, data.test_images):
        assert torch.allclose(probe_set(keyed, images).inputs, key.apply(public.encode_eval(images)), atol=1e-5)
    # training batches: k = 1 rows are keyed faces; mixed rows are mixtures of keyed faces
    row = TrainingStream(cfg, keyed, data).next()
    assert torch.allclose(row.masked.inputs, key.apply(public.encode_eval(row.originals)), atol=1e-5)
    grid = with_owner_options(grid_defence(Config().validate(), "k=3,flip=0.0,extra_removed=9,alpha=1.0,labels=soft"), ["+key"], cfg)
    batch = TrainingStream(cfg, grid, data).next()
    m, gk = batch.masked, grid.mask.key
    plain = grid.public().mask.transform(batch.originals)
    plain[:, grid.mask.extra_removed_channels(9)] = 0  # extra channels are removed in the DCT basis, then keyed
    expected = sum(m.weights[:, j, None, None, None] * gk.apply(plain)[m.sources[:, j]] for j in range(m.k))
    assert torch.allclose(m.inputs, expected, atol=1e-4)
    # the benchmark's attacks get the public view
    run = type("Run", (), {"defence": keyed, "model": None, "batches": None})()
    target, _, _ = attacked_batches(cfg, run, data, 1)
    assert target.defence.mask.key is None
    # evaluation flips: the same message, with random signs
    flipped = keyed.with_owner_options(eval_flip=0.5)
    a, b = flipped.encode_eval(data.val_images), keyed.encode_eval(data.val_images)
    assert torch.allclose(a.abs(), b.abs(), atol=1e-6) and 0.4 < (a * b < 0).float().mean() < 0.6


def test_a_keyed_fr_run_still_identifies(att_root, tmp_path):
    small = ["model.widths=[16,32,64]", "fr.batch_size=32", "fr.steps=60", "fr.eval_every=60"]
    cfg = load_config(None, ["strategy.name=mask", "mask.key=channels", *small])
    summary = train_fr(cfg, tmp_path / "keyed", progress=False)
    # 20 identities: chance 5%; the unkeyed mask reaches ~90% at 600 steps (test_train_fr)
    assert summary["identification_acc"] >= 0.3, summary["identification_acc"]
    assert summary["defence"]["key"] == {"kind": "channels"}


def test_settings_extra_removed_under_the_key_matches_the_unkeyed_removal(att_root):
    cfg = H.bare_config().validate()
    data = prepare_data(cfg)
    plain = build_defence(cfg, "mask")
    key = OwnerKey(3, "positions")
    keyed = plain.with_owner_options(key)
    s = MaskSettings(k=1, flip=0.0, extra_removed=4, alpha=1.0, labels="soft")
    faces, labels = data.train_images[:6], data.train_labels[:6]
    out = keyed.encode_train(faces, labels, settings=s).inputs
    ref = plain.encode_train(faces, labels, settings=s).inputs
    assert torch.allclose(key.invert(out), ref, atol=1e-5)


def _key_undo(make_defence, batches: int):
    """A channels-keyed defence's first ``batches`` crossed batches as the benchmark attacks
    them, and its ``KeyUndo`` (the key estimated from those and every probe)."""
    from rl_mask.bench.benchmark import KeyUndo, ProbeMessages

    cfg = _cfg(key="channels")
    data = prepare_data(cfg)
    keyed = make_defence(cfg)
    run = type("Run", (), {"defence": keyed, "model": None, "batches": None})()
    target, _, _ = attacked_batches(cfg, run, data, batches)
    public_faces = data.split.public.float_images()
    return cfg, data, keyed, target, public_faces, KeyUndo(run, target, public_faces, ProbeMessages.of(run, data))


def test_whitebox_recover_rotates_what_crossed_back_with_an_estimated_key(att_root):
    """``whitebox+recover``: from the crossed messages alone (training rows, the held-out faces'
    probes) and its public faces, the attacker estimates the key and rotates every row back
    (an orthogonal estimate: each block's energy stays), labels and weights untouched. How close
    the estimate comes is measured, not assumed (README, key recovery; the next tests)."""
    from rl_mask.bench.benchmark import KeyUndo, ProbeMessages

    _, data, keyed, target, public_faces, undo = _key_undo(lambda cfg: build_defence(cfg, "mask"), batches=4)
    undone = undo(target)
    for before, after in zip(target.crossed, undone.crossed):
        assert torch.equal(before.labels, after.labels) and torch.equal(before.weights, after.weights)
        assert torch.allclose(after.inputs.pow(2).sum(1), before.inputs.pow(2).sum(1), rtol=1e-3, atol=1e-6)
        assert not torch.allclose(after.inputs, before.inputs, atol=1e-3)
    assert undo.estimate() is undo.estimate()  # estimated once per row, whatever it is applied to
    plain = type("Run", (), {"defence": keyed.public()})()
    assert KeyUndo(plain, target, public_faces, ProbeMessages.of(plain, data))(target) is target  # no key: nothing to undo


def test_every_config_holds_a_fresh_secret_that_its_saved_copy_keeps(tmp_path):
    """No two configs share a secret unless one was read from the other's file (what the
    server's side is told instead of the config: the next test)."""
    a, b = Config(), load_config(None)
    assert a.mask.key_seed >= 0 and b.mask.key_seed >= 0 and a.mask.key_seed != b.mask.key_seed
    save_config(a, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").mask.key_seed == a.mask.key_seed
    # the secret seeds the owner's random draws: the same public seed, another secret, other flips
    data = prepare_data(a)
    streams = [TrainingStream(cfg, build_defence(cfg, "mask"), data) for cfg in (a, load_config(tmp_path / "config.yaml"), b)]
    draws = [torch.rand(4, generator=s.generator) for s in streams]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def _leaves(d, path=""):
    """Every ``(path, value)`` of a nested dict / sequence, keys included in the path."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(d, (list, tuple)):
        for i, v in enumerate(d):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, d


def test_the_server_and_the_attacker_are_told_neither_the_face_folder_nor_the_key(att_root):
    """``TrainingSetup`` and ``AttackerSetup`` are built from the owner's config, which holds
    its face folder and its secret; neither setup carries either (nor the owner's own knobs:
    how it augments, its evaluation flips), and each survives its own dict round trip."""
    cfg = _cfg(key_seed=987_654_321_123)
    cfg.data.root = str(att_root)
    defence = build_defence(cfg, "adaptive")
    data = prepare_data(cfg)
    setups = {"training": training_setup(cfg, defence, data), "attacker": attacker_setup(cfg)}
    for name, setup in setups.items():
        leaves = list(_leaves(setup.to_dict()))
        names = " ".join(path for path, _ in leaves)
        values = [v for _, v in leaves]
        for owner_only in ("root", "key_seed", "eval_flip", "augment", "data"):
            assert f".{owner_only}" not in names, (name, owner_only, names)
        assert str(att_root) not in [str(v) for v in values], name
        assert cfg.mask.key_seed not in values, name
    assert TrainingSetup.from_dict(setups["training"].to_dict()) == setups["training"]
    assert AttackerSetup.from_dict(setups["attacker"].to_dict()) == setups["attacker"]
    # what they are told is the public algorithm's and the server's part of the config
    assert setups["attacker"].mask.removed_channels == tuple(cfg.mask.removed_channels)
    assert setups["attacker"].settings.k_choices == tuple(cfg.rl.k_choices)
    assert setups["attacker"].mask.key == cfg.mask.key  # the construction is public (Kerckhoffs), its seed is not
    assert setups["training"].fr.lr == cfg.fr.lr and setups["training"].fr.rows_per_step == cfg.fr.rows_per_step


def test_k1_messages_are_flipped_as_the_training_rows(att_root):
    """``mask.eval_flip=-1``: the adaptive policy (flip choices up to 0.5) sends flipped k = 1
    messages, fresh flips each time; ``mask`` (never flipped in training) sends them unflipped;
    the env's pre-mixing coefficients are never flipped (only the message is)."""
    cfg = Config()
    faces = prepare_data(cfg).test_images[:4]
    adaptive, mask = build_defence(cfg, "adaptive"), build_defence(cfg, "mask")
    assert adaptive.eval_flip == 0.5 and mask.eval_flip == 0.0
    assert torch.equal(mask.encode_eval(faces), adaptive.transform(faces))
    first, second = adaptive.encode_eval(faces), adaptive.encode_eval(faces)
    assert torch.equal(first.abs(), adaptive.transform(faces).abs()) and not torch.equal(first, second)
    flipped = (first != adaptive.transform(faces)).float().mean()
    assert 0.45 < float(flipped) < 0.55
    cfg.mask.eval_flip = 0.0
    assert build_defence(cfg, "adaptive").eval_flip == 0.0


def test_k1_messages_remove_the_channels_the_training_rows_remove(att_root):
    """``mask.eval_extra_removed=-1``: a fixed setting's probes and held-out encodings zero
    the extra channels its training rows zero (in the DCT basis: under the key, undone by the
    owner they are zero there), a policy's what all its settings remove (the least), ``mask``
    none; the door's decoder simulates that encoding (its fit key reads it); an explicit count wins."""
    cfg = Config()
    faces = prepare_data(cfg).test_images[:4]
    assert build_defence(cfg, "adaptive").eval_extra_removed == min(cfg.rl.extra_removed_choices) == 0
    cfg.rl.extra_removed_choices = [4, 9]
    assert build_defence(cfg, "adaptive").eval_extra_removed == 4
    cfg.rl.extra_removed_choices = [0, 4, 9]
    assert build_defence(cfg, "mask").eval_extra_removed == 0
    fixed = grid_defence(cfg, "k=3,flip=0.0,extra_removed=4,alpha=4.0,labels=hard")
    assert fixed.eval_extra_removed == 4 and grid_defence(cfg, "k=3,flip=0.0,extra_removed=0,alpha=4.0,labels=hard").eval_extra_removed == 0
    assert hybrid_defence(cfg, "adaptive", [2], settings_pool=[MaskSettings(k=2, extra_removed=e) for e in (9, 4, 9)]).eval_extra_removed == 4
    assert hybrid_defence(cfg, "adaptive", [2], settings_pool=[MaskSettings(k=2, extra_removed=e) for e in (9, 0, 4)]).eval_extra_removed == 0
    sent = fixed.encode_eval(faces)
    in_dct = fixed.mask.key.invert(sent)
    extra = fixed.mask.extra_removed_channels(4)
    assert in_dct[:, extra].abs().max() < 1e-5 and in_dct.abs().amax(dim=(0, 2, 3)).gt(1e-3).sum() == in_dct.shape[1] - len(extra)
    assert torch.allclose(in_dct, fixed.mask.key.invert(fixed.transform(faces)).index_fill(1, extra, 0.0), atol=1e-5)
    door = EvalMessageView(fixed.public()).simulation_params()
    assert door["eval_extra_removed"] == 4 and EvalMessageView(grid_defence(cfg, "k=3,flip=0.0,extra_removed=0,alpha=4.0,labels=hard").public()).simulation_params() != door
    cfg.mask.eval_extra_removed = 0
    assert grid_defence(cfg, "k=3,flip=0.0,extra_removed=4,alpha=4.0,labels=hard").eval_extra_removed == 0
    cfg.mask.eval_extra_removed = 4
    assert build_defence(cfg, "adaptive").eval_extra_removed == 4
    cfg.mask.eval_extra_removed = 60
    with pytest.raises(ConfigError, match="mask.eval_extra_removed"):
        cfg.validate()


def test_key_recovery_reads_the_rows_it_holds_against_its_faces_under_the_same_public_settings(att_root):
    """Second moments depend on how the rows were mixed (k, weights, extra removal), which a
    fixed setting makes public: the benchmark's estimate of a channels key reads the crossed
    training rows against its own faces put through that setting (and the probes against k = 1
    encodings), and its axes come far closer to the owner's key's than against k = 1 encodings
    alone; their signs, from the mean face, bring the undone rows back towards the truth."""
    from rl_mask.attacks.key_recovery import key_reference, recover_rotation, rotation_alignment

    _, _, keyed, target, public_faces, undo = _key_undo(lambda cfg: grid_defence(cfg, "k=3,flip=0.0,extra_removed=0,alpha=4.0,labels=hard"), batches=8)
    _, c, h, w = target.crossed[0].inputs.shape
    true_q = keyed.mask.key.matrices(c, h, w)[0]
    matched = rotation_alignment(true_q, undo.estimate().q)
    k1_only = rotation_alignment(true_q, recover_rotation(undo.held(), key_reference(target.defence, public_faces, "channels"), per_position=False))
    assert matched > k1_only + 0.1, (matched, k1_only)
    # and with the axes' signs read from the mean face, the undone rows come back towards the truth
    held, truth = undo.held(), keyed.mask.key.invert(undo.held())
    keyed_error = float((held - truth).norm() / truth.norm())
    undone_error = float((undo.estimate().undo(held) - truth).norm() / truth.norm())
    assert undone_error < 0.75 * keyed_error, (undone_error, keyed_error)


def test_the_attacker_in_the_loop_estimates_a_rotation_key_from_unflipped_batches_and_attacks_with_it_undone(att_root):
    """The reward's attacker is no weaker than the benchmark's ``+recover`` attacks: it holds
    the batches sent without flips, estimates the owner's channels key from them against its
    own faces under each batch's settings, and attacks those batches with the key undone too.
    A flipped batch teaches it nothing about the key (the flips zero the moments it reads)."""
    from rl_mask.attacks.key_recovery import rotation_alignment
    from rl_mask.attacks.online import OnlineAttacker
    from rl_mask.owner.defences import hybrid_mask_from_config

    cfg = _cfg(key="channels")
    cfg.rl.attacker_warmup_steps, cfg.rl.attacker_train_steps = 0, 0
    cfg.rl.attacker_rows, cfg.rl.attacker_widths = 4, [8, 8, 8]  # the key, not the decoder, is under test
    data = prepare_data(cfg)
    owner = hybrid_mask_from_config(cfg)
    attacker = OnlineAttacker.from_setup(attacker_setup(cfg), data.split.public.float_images())
    assert attacker.key is not None and attacker.key.estimate is None
    generator = torch.Generator().manual_seed(0)
    plain, flipped = MaskSettings(3, 0.0, 0, 4.0, "soft"), MaskSettings(3, 0.5, 0, 4.0, "soft")

    def batch(settings):
        idx = torch.randint(len(data.train_images), (64,), generator=generator)
        return owner.apply(data.train_images[idx], data.train_labels[idx], settings, generator).protected()

    out = attacker.observe(batch(flipped), flipped)
    assert "whitebox+recover" not in out and attacker.key.estimate is None
    for _ in range(9):  # estimated on the first, again after 8 more
        out = attacker.observe(batch(plain), plain)
    assert {"whitebox", "whitebox+recover", "label-aware", "label-aware+recover"} <= set(out)
    assert out["whitebox+recover"].shape == out["whitebox"].shape
    assert attacker.info()["key_estimates"] == 2 and attacker.info()["key_rows_held"] == 9 * 64
    b = batch(plain)
    _, c, h, w = b.inputs.shape
    true_q = owner.key.matrices(c, h, w)[0]
    assert rotation_alignment(true_q, attacker.key.estimate.q) > 0.4  # a random rotation: about 0.1
    off = load_config(None, ["mask.key=channels", "rl.attacker_recover=false", "rl.attacker_warmup_steps=0"])
    assert OnlineAttacker.from_setup(attacker_setup(off), data.split.public.float_images()).key is None


def test_key_recovery_reads_only_the_messages_sent_without_flips_each_against_its_own_settings(att_root):
    """A policy that flips most batches still sends some without flips, and each message's
    settings are public. Pooling every row against the pool's settings mixes the flipped
    messages (noise to second moments) into the estimate; reading only the unflipped ones,
    each against the attacker's faces under that message's settings, finds the key's axes and
    brings those batches back towards the truth, as for a fixed unflipped setting."""
    from rl_mask.attacks.key_recovery import key_reference, reads_key, recover_rotation, rotation_alignment
    from rl_mask.mask.defences import HybridDefence
    from rl_mask.owner.defences import hybrid_mask_from_config

    plain = [MaskSettings(2, 0.0, 0, 4.0, "hard"), MaskSettings(3, 0.0, 4, 0.5, "soft")]
    pool = plain + [MaskSettings(k, 0.5, 0, 4.0, "hard") for k in (2, 3, 4, 5)] * 2  # 8 of 10 flipped

    def policy_like(cfg):
        return HybridDefence("pool", hybrid_mask_from_config(cfg), [2], settings_pool=pool, eval_flip=0.5)

    _, _, keyed, target, public_faces, undo = _key_undo(policy_like, batches=24)
    unflipped = [b.inputs for b, s in zip(target.crossed, target.settings) if reads_key(s)]
    assert 0 < len(unflipped) < len(target.crossed) // 2
    _, c, h, w = target.crossed[0].inputs.shape
    true_q = keyed.mask.key.matrices(c, h, w)[0]
    held, _ = undo.moments()
    assert held.shape[0] == sum(len(x) for x in unflipped)  # the flipped rows and the flipped probes left out
    whitebox = rotation_alignment(true_q, undo.estimate().q)
    all_rows = undo.held()
    pooled = recover_rotation(all_rows, key_reference(target.defence, public_faces, "channels", training_rows=len(undo.training_rows()), probe_rows=len(all_rows) - len(undo.training_rows())), per_position=False)
    assert whitebox > rotation_alignment(true_q, pooled) + 0.1, (whitebox, rotation_alignment(true_q, pooled))
    rows = torch.cat(unflipped)
    truth = keyed.mask.key.invert(rows)
    keyed_error = float((rows - truth).norm() / truth.norm())
    assert float((undo.estimate().undo(rows) - truth).norm() / truth.norm()) < 0.75 * keyed_error
