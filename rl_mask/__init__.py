"""rl-mask core: frequency transform, hybrid masking, models, data, FR training, attacks, metrics.

Imports no Ray: runs the same in a notebook, a test, an env runner or an actor.
"""

__version__ = "0.1.0"
