"""Entry script for ``ray submit`` and ``ray job submit``: ``rl-mask train --address auto ...``.

    ray submit --tmux cluster/aws.yaml trainers/cluster_entry.py -- --out /mnt/shared/runs/r1
    RAY_AUTH_MODE=token ray job submit --runtime-env cluster/runtime_env.yaml -- python -m trainers.cluster_entry --out ...

(``--tmux``: the driver outlives the SSH session; the job API needs token mode on the client.)

It runs on the head node and calls exactly the code of ``rl-mask train``; arguments are
those of ``rl-mask train`` (``--address`` defaults to ``auto``). The config is validated
and the faces are loaded before any cluster resource is taken.
"""

from __future__ import annotations

import sys

from trainers.cli import main


def cluster_argv(argv: list[str]) -> list[str]:
    has_address = any(a == "--address" or a.startswith("--address=") for a in argv)
    return ["train", *([] if has_address else ["--address", "auto"]), *argv]


if __name__ == "__main__":
    sys.exit(main(cluster_argv(sys.argv[1:])))
