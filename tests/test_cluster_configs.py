"""Every cluster config parses and passes Ray's own validation."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

from trainers.cluster_entry import cluster_argv

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


@pytest.mark.parametrize("name", ["aws.yaml", "onprem.yaml"])
def test_launcher_yamls_pass_ray_schema(name):
    cfg = yaml.safe_load((CLUSTER / name).read_text())
    validate_config(prepare_config(copy.deepcopy(cfg)))
    # the dashboard (job API) is never opened beyond localhost, token auth is on
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "RAY_AUTH_MODE=token" in start
    assert "rl-mask" in " ".join(cfg["setup_commands"])
    # the schema check is real: a misspelt field fails it
    broken = copy.deepcopy(cfg)
    broken["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_aws_has_gpu_and_spot_cpu_worker_types():
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    types = cfg["available_node_types"]
    assert types["gpu_worker"]["resources"]["GPU"] == 1
    assert types["cpu_worker"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"


def test_runtime_env_and_rayjob():
    env = RuntimeEnv(**yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text()))
    assert env["working_dir"] == "." and ".venv" in env["excludes"]
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("python -m trainers.cluster_entry")
    RuntimeEnv(**yaml.safe_load(job["spec"]["runtimeEnvYAML"]))
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    groups = {g["groupName"]: g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    assert groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_entry_defaults_to_the_running_cluster():
    assert cluster_argv(["--out", "r"]) == ["train", "--address", "auto", "--out", "r"]
    assert cluster_argv(["--address", "10.0.0.1:6379", "--out", "r"]) == ["train", "--address", "10.0.0.1:6379", "--out", "r"]
