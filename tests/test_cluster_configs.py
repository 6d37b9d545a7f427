"""Cluster configs: Ray's own launcher validation, a RayJob schema taken from KubeRay's CRD,
and the rules that make them actually deploy (interpreter, GPU, auth, storage, ports)."""

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

from rl_mask.config import load_config
from trainers.cluster_entry import cluster_argv

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"
LAUNCHERS = ["aws.yaml", "onprem.yaml"]


def launcher(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


# ----------------------------------------------------------------------------- launcher configs


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_yamls_pass_ray_schema(name):
    cfg = launcher(name)
    validate_config(prepare_config(copy.deepcopy(cfg)))
    # the dashboard (job API) is never opened beyond localhost, token auth is on
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "RAY_AUTH_MODE=token" in start
    assert all("RAY_AUTH_MODE=token" in c for c in cfg["worker_start_ray_commands"] if " start " in c)
    # no core dumps of processes that hold faces, on any node
    starts = [c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"] if " start " in c]
    assert starts and all("ulimit -c 0;" in c for c in starts) and "unlimited" not in " ".join(starts)
    # the schema check is real: a misspelt field fails it
    broken = copy.deepcopy(cfg)
    broken["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def interpreter_plan(cfg: dict) -> dict:
    """What the setup and start commands do with Python, read from the commands themselves."""
    setup = cfg["setup_commands"] + cfg.get("head_setup_commands", []) + cfg.get("worker_setup_commands", [])
    words = [shlex.split(part) for cmd in setup for part in re.split(r"&&|\|\||;", cmd)]
    venvs = [(w[0], w[w.index("venv") + 1]) for w in words if w[1:3] == ["-m", "venv"]]
    assert len(venvs) == 1, f"one virtual environment is made: {venvs}"
    base, venv = venvs[0]
    return {"setup": setup, "words": words, "base": base, "venv": venv}


@pytest.mark.parametrize("name", LAUNCHERS)
def test_setup_installs_into_one_interpreter_and_everything_runs_with_it(name):
    cfg = launcher(name)
    plan = interpreter_plan(cfg)
    venv = plan["venv"]
    python, ray = f"{venv}/bin/python", f"{venv}/bin/ray"
    installs = [w for w in plan["words"] if "pip" in w and "install" in w]
    assert installs and all(w[:4] == [python, "-m", "pip", "install"] for w in installs), installs
    assert any(w[-1].endswith("rl-mask") and "-e" in w for w in installs)  # the package (and Ray with it)
    assert not any("--user" in w for w in installs)  # PEP 668 refuses it on current distributions
    # `ray submit` runs `python` in a login shell: the venv is first on PATH there
    assert any(f"export PATH={venv}/bin:$PATH" in c and "~/.bashrc" in c for c in plan["setup"])
    # Ray is started (and stopped) by the venv's own ray
    for cmd in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        for part in re.split(r";", cmd):
            ray_words = [w for w in shlex.split(part) if w.endswith("/ray") or w == "ray"]
            assert ray_words in ([], [ray]), cmd
    assert plan["base"].startswith("python3")


def test_aws_nodes_come_up_with_what_the_commands_need():
    cfg = launcher("aws.yaml")
    plan = interpreter_plan(cfg)
    types = cfg["available_node_types"]
    # one explicit image on every node type (Ray's default AMI is not what the commands expect)
    images = {t["node_config"].get("ImageId") for t in types.values()}
    assert len(images) == 1 and re.fullmatch(r"ami-[0-9a-f]{8,17}", images.pop())
    # the interpreter is a Python >= 3.10 that the same setup commands install
    assert re.fullmatch(r"python3\.1[0-2]", plan["base"])
    dnf = next(w for w in plan["words"] if "dnf" in w and "install" in w)
    assert plan["base"] in dnf and "amazon-efs-utils" in dnf and "tmux" in dnf
    mount = next(i for i, w in enumerate(plan["words"]) if w[:3] in (["mount", "-t", "efs"], ["sudo", "mount", "-t"]))
    assert plan["words"].index(dnf) < mount  # efs-utils is there before `mount -t efs`
    # the autoscaler on the head talks to AWS through boto3, in the interpreter Ray runs from
    assert any("boto3" in c and c.startswith(f"{plan['venv']}/bin/python -m pip install") for c in cfg["head_setup_commands"])
    # the FR actor's GPU: a GPU node that is up from the start, and a run config that asks for it
    gpu = types["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] >= 1
    assert types["cpu_worker"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    # the head runs the driver and learner; env runners and the FR actor go to workers
    assert types["head"]["resources"]["CPU"] == 0
    run = load_config(CLUSTER / "aws_train.yaml")
    assert run.rl.fr_num_gpus >= 1 and run.rl.fr_num_cpus <= gpu["resources"]["CPU"]
    assert run.rl.env_runner_max_restarts >= 1000 and run.rl.fr_max_restarts == -1
    assert "aws_train.yaml" in (CLUSTER / "aws.yaml").read_text().split("cluster_name")[0]
    assert "ray submit --tmux" in (CLUSTER / "aws.yaml").read_text()


# ----------------------------------------------------------------------------- KubeRay RayJob

# The part of KubeRay's RayJob CRD (ray-operator/config/crd/bases/ray.io_rayjobs.yaml,
# v1) these files use, written out by hand: field names and types as the CRD has them;
# objects are closed, so a misspelt or misplaced field fails here as it would in
# `kubectl apply` with strict field validation.
STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}


def obj(required=(), **props):
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


def arr(items):
    return {"type": "array", "items": items}


STR_MAP = {"type": "object", "additionalProperties": STR}
QUANTITY = {"anyOf": [INT, STR]}
CONTAINER = obj(
    ["name"],
    name=STR, image=STR, imagePullPolicy={"enum": ["Always", "Never", "IfNotPresent"]},
    command=arr(STR), args=arr(STR),
    ports=arr(obj(["containerPort"], name=STR, containerPort=INT, protocol=STR)),
    env=arr(obj(["name"], name=STR, value=STR)),
    resources=obj(limits={"type": "object", "additionalProperties": QUANTITY}, requests={"type": "object", "additionalProperties": QUANTITY}),
    volumeMounts=arr(obj(["name", "mountPath"], name=STR, mountPath=STR, readOnly=BOOL)),
)
POD_TEMPLATE = obj(
    spec=obj(
        ["containers"],
        containers=arr(CONTAINER),
        terminationGracePeriodSeconds=INT,
        volumes=arr(obj(["name"], name=STR, persistentVolumeClaim=obj(["claimName"], claimName=STR, readOnly=BOOL))),
    )
)
RAYJOB_SCHEMA = obj(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "ray.io/v1"},
    kind={"const": "RayJob"},
    metadata=obj(["name"], name=STR, namespace=STR),
    spec=obj(
        ["entrypoint", "rayClusterSpec"],
        entrypoint=STR, backoffLimit=INT, shutdownAfterJobFinishes=BOOL, ttlSecondsAfterFinished=INT,
        activeDeadlineSeconds=INT, runtimeEnvYAML=STR, submissionMode=STR,
        rayClusterSpec=obj(
            ["headGroupSpec"],
            rayVersion=STR,
            authOptions=obj(mode={"enum": ["disabled", "token"]}, secretName=STR, enableK8sTokenAuth=BOOL),
            headGroupSpec=obj(["template"], rayStartParams=STR_MAP, serviceType=STR, template=POD_TEMPLATE),
            workerGroupSpecs=arr(
                obj(
                    ["groupName", "maxReplicas", "minReplicas", "template"],
                    groupName=STR, replicas=INT, minReplicas=INT, maxReplicas=INT, rayStartParams=STR_MAP, template=POD_TEMPLATE,
                )
            ),
        ),
    ),
)
PVC_SCHEMA = obj(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "v1"},
    kind={"const": "PersistentVolumeClaim"},
    metadata=obj(["name"], name=STR, namespace=STR),
    spec=obj(["accessModes", "resources"], accessModes=arr(STR), storageClassName=STR, resources=obj(requests=obj(storage=STR))),
)


def rayjob() -> dict:
    return yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())


def pods(job: dict) -> list[dict]:
    spec = job["spec"]["rayClusterSpec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def test_rayjob_matches_the_crd_fields_and_types():
    job = rayjob()
    jsonschema.validate(job, RAYJOB_SCHEMA)
    RuntimeEnv(**yaml.safe_load(job["spec"]["runtimeEnvYAML"]))
    # the schema is strict: a misplaced field, a wrong type and a bad enum all fail
    for path, value in [(("spec", "rayClusterSpec", "dashboardHost"), "x"), (("spec", "backoffLimit"), "3"), (("spec", "rayClusterSpec", "authOptions", "mode"), "tokens")]:
        broken = copy.deepcopy(job)
        node = broken
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, RAYJOB_SCHEMA)


def test_rayjob_deploys_auth_storage_ports_and_retries():
    job = rayjob()
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    # the submitter pod and the operator reach the job API: no localhost-only dashboard
    assert "dashboard-host" not in head["rayStartParams"]
    assert head["rayStartParams"].get("num-cpus") == "0"
    # token auth through KubeRay (it injects mode and token into every pod, submitter included)
    assert cluster["authOptions"] == {"mode": "token", "secretName": "ray-auth-token"}
    for pod in pods(job):
        for c in pod["containers"]:
            assert not {e["name"] for e in c.get("env", [])} & {"RAY_AUTH_TOKEN", "RAY_AUTH_MODE"}, c["name"]
            # a fixed tag, pulled once
            assert c["imagePullPolicy"] == "IfNotPresent" and not c["image"].endswith(":latest") and ":" in c["image"].split("/")[-1]
        # the ReadWriteMany claim on every pod
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert claims == {"rl-mask-shared"}
    pvc = yaml.safe_load((CLUSTER / "shared_pvc.yaml").read_text())
    jsonschema.validate(pvc, PVC_SCHEMA)
    assert pvc["metadata"]["name"] == "rl-mask-shared" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # head service ports: KubeRay takes them from the first container, and listing any drops its defaults
    ray_head = head["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in ray_head["ports"]}
    assert ray_head["name"] == "ray-head"
    assert {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "tensorboard": 6006}.items() <= ports.items()
    tb = next(c for c in head["template"]["spec"]["containers"] if c["name"] == "tensorboard")
    assert tb["command"][0] == "tensorboard" and tb["command"][tb["command"].index("--port") + 1] == "6006"
    assert tb["command"][tb["command"].index("--host") + 1] == "127.0.0.1"  # no authentication: the pod's loopback only
    # the GPU group is there from the start; SIGTERM gets time to checkpoint
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert groups["gpu"]["minReplicas"] >= 1
    assert groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert head["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    # a job stop waits for the iteration and its checkpoint before SIGKILL (Ray's default: 3 s)
    stop_wait = int(yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"])
    assert 60 <= stop_wait <= head["template"]["spec"]["terminationGracePeriodSeconds"]
    # a retried attempt resumes its run folder instead of being refused
    assert spec["backoffLimit"] >= 1
    entry = shlex.split(spec["entrypoint"])
    assert entry[:3] == ["python", "-m", "trainers.cluster_entry"] and "--auto-resume" in entry and "--out" in entry
    assert entry[entry.index("--set") + 1].startswith("rl.") and "rl.fr_num_gpus=1" in entry
    assert "rl.attacker_num_cpus=1" in entry  # the head has no CPU for actors: the attacker goes to a worker


def test_runtime_env_for_job_submit():
    env = RuntimeEnv(**yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text()))
    assert env["working_dir"] == "." and ".venv" in env["excludes"]
    assert "RAY_AUTH_MODE=token ray job submit" in (CLUSTER / "runtime_env.yaml").read_text()
    assert int(env["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"]) >= 60


def test_aws_run_folders_are_writable_private_and_the_attacker_avoids_the_head():
    from rl_mask.config import load_config

    setup = " ".join(launcher("aws.yaml")["setup_commands"])
    assert "install -d -o ec2-user -g ec2-user -m 0700 /mnt/shared/runs" in setup
    cfg = load_config(CLUSTER / "aws_train.yaml")
    assert cfg.rl.attacker_num_cpus >= 1 and cfg.rl.fr_num_cpus >= 1


def test_entry_defaults_to_the_running_cluster():
    assert cluster_argv(["--out", "r"]) == ["train", "--address", "auto", "--out", "r"]
    assert cluster_argv(["--address", "10.0.0.1:6379", "--out", "r"]) == ["train", "--address", "10.0.0.1:6379", "--out", "r"]


def test_entry_data_flag_puts_the_absolute_face_folder_in_the_config(tmp_path, monkeypatch, att_root):
    """What a job's env runners and FR actor read: ``--data`` given relative to the driver's
    folder arrives in ``data.root`` as an absolute path (the job test covers RL_MASK_DATA)."""
    from trainers.cli import _overrides, build_parser
    from trainers.run_config import resolve_config

    (tmp_path / "faces").symlink_to(att_root, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RL_MASK_DATA", "/nonexistent/elsewhere")  # the flag wins over the environment
    args = build_parser().parse_args(cluster_argv(["--out", "r", "--data", "faces"]))
    cfg = resolve_config(args.config, _overrides(args, {}), args.debug, None)
    assert cfg.data.root == str(Path(att_root).resolve())
    assert cfg.data.resolved_root() == cfg.data.root
