import pytest

from rl_mask.config import Config, ConfigError, load_config


def _load(tmp_path, text, overrides=()):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return load_config(p, list(overrides))


def test_defaults_validate():
    Config().validate()


def test_yaml_and_overrides(tmp_path):
    cfg = _load(tmp_path, "strategy:\n  name: fixed-k\n  k: 3\nmask:\n  cap: 0.6\n", ["fr.steps=7"])
    assert cfg.strategy.k == 3 and cfg.mask.cap == 0.6 and cfg.fr.steps == 7


@pytest.mark.parametrize(
    "text, match",
    [
        ("strategy: {k: 0}", r"strategy\.k=0 is out of range"),
        ("strategy: {name: fixed-k, k: 4}\nmask: {cap: 0.2}\nrl: {k_choices: [4, 6]}", r"mask\.cap=0\.2 is out of range: .*> 0\.2500"),
        ("strategy: {name: fixed-k, k: 4}\nmask: {cap: 0.5}", r"mask\.cap=0\.5 .*smallest mixing k is 2, so cap must be > 0\.5000"),
        ("strategy: {name: magic}", r"strategy\.name='magic' is out of range: one of"),
        ("rl: {label_choices: [soft, medium]}", r"rl\.label_choices=\['soft', 'medium'\] is out of range: each one of"),
        ("rl: {flip_choices: [0.0, 0.7]}", r"rl\.flip_choices=\[0\.0, 0\.7\] is out of range: probabilities in \[0, 0\.5\]"),
        ("rl: {extra_removed_choices: [0, 58]}", r"rl\.extra_removed_choices=\[0, 58\] is out of range: each < 58"),
        ("rl: {reward: accuracy}", r"rl\.reward='accuracy' is out of range: one of"),
        ("rl: {attacker_in_loop: false}", r"rl\.attacker_in_loop=False is out of range: true: rl\.reward='leak' scores the attacker's leak"),
        ("benchmark: {fixed_grid: ['k=4,flip=0.5']}", r"benchmark\.fixed_grid: 'k=4,flip=0\.5': missing extra_removed, alpha, labels"),
        ("benchmark: {fixed_grid: ['k=4,flip=2,extra_removed=0,alpha=1,labels=soft']}", r"benchmark\.fixed_grid: .*needs k >= 1, flip in \[0, 0\.5\]"),
        ("benchmark: {fixed_grid: ['k=4,flip=0,extra_removed=0,alpha=1,labels=soft,colour=red']}", r"'colour=red' is not one of k=\.\.\."),
        ("mask: {colour: 1}", r"unknown field mask\.colour"),
        ("fr: {steps: many}", r"fr\.steps: expected an integer, got 'many'"),
        ("data: {height: 100}", r"data\.height=100 .*multiple of 8"),
        ("mask: {removed_channels: [0, 64]}", r"mask\.removed_channels"),
        ("fr: {device: tpu}", r"fr\.device='tpu'"),
        ("fr: {rows_per_step: 32}", r"fr\.rows_per_step=32 is out of range: 0 \(one batch per step\) or >= fr\.batch_size \(64\)"),
        ("rl: {attacker_mode: often}", r"rl\.attacker_mode='often' is out of range: one of \('exact', 'sampled'\)"),
        ("rl: {learner_threads: 0}", r"rl\.learner_threads=0 is out of range: >= 1"),
        ("rl: {attacker_sample_rate: 0}", r"rl\.attacker_sample_rate=0\.0 is out of range: \(0, 1\]"),
        ("rl: {attacker_mode: sampled, leak_reward: batch}", r"rl\.leak_reward='batch' needs rl\.attacker_mode='exact'"),
        ("rl: {gamma: -0.1}", r"rl\.gamma=-0\.1 is out of range: \[0, 1\]"),
        ("fr: {precision: fp16}", r"fr\.precision='fp16' is out of range: one of \('fp32', 'bf16'\)"),
        ("fr: {channels_last: maybe}", r"fr\.channels_last: expected"),
        ("fr: {rows_per_step: 256}\nrl: {fr_workers: 2}", r"fr\.rows_per_step=256 is out of range: 0 with rl\.fr_workers=2"),
        ("mask: {key: scramble}", r"model\.arch='conv' is out of range: mlp with the scramble or dense key"),
        ("benchmark: {defences: [mask, mask+dense]}", r"model\.arch='conv' is out of range: mlp with the scramble or dense key"),
        ("model: {arch: transformer}", r"model\.arch='transformer' is out of range: one of conv, mlp"),
        ("- just a list", r"top level must be a mapping"),
    ],
)
def test_bad_values_name_the_field(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        _load(tmp_path, text)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_exponent_floats_are_numbers_in_yaml_and_overrides(tmp_path):
    cfg = _load(tmp_path, "fr: {lr: 1e-3}\nrl: {lr: 5E-4, sample_timeout_s: 1e3}\n", ["dp.delta=1e-6", "mask.alpha=2e0"])
    assert cfg.fr.lr == 0.001 and cfg.rl.lr == 0.0005 and cfg.rl.sample_timeout_s == 1000.0
    assert cfg.dp.delta == 1e-6 and cfg.mask.alpha == 2.0
    with pytest.raises(ConfigError, match=r"fr\.steps: expected an integer, got 1000\.0"):
        _load(tmp_path, "fr: {steps: 1e3}")


def test_an_unparsable_override_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"override 'fr\.steps=\[1': '\[1' is not a valid YAML value"):
        load_config(None, ["fr.steps=[1"])


def test_an_unparsable_override_on_the_command_line_is_one_clear_line(cli_env, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "trainers.cli", "train-fr", "--out", str(tmp_path / "r"), "--set", "fr.steps=[1"],
        env=cli_env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("rl-mask: error: override 'fr.steps=[1'")
    assert not (tmp_path / "r").exists()


def test_setting_one_field_of_the_quick_budget_keeps_the_rest_of_the_quick_budget():
    from rl_mask.config import BenchmarkConfig

    cfg = load_config(None, ["benchmark.quick.eval_model_steps=20"])
    quick = BenchmarkConfig().quick
    assert cfg.benchmark.quick.eval_model_steps == 20
    assert cfg.benchmark.quick.fr_steps == quick.fr_steps and cfg.benchmark.quick.context_batches == quick.context_batches
