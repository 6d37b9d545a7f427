"""The public algorithm (Kerckhoffs): block DCT, channel removal, mixing, sign flips, the
per-batch settings, the defences built from them and the augmentation of faces.

The data owner and the attacker both run it (the attacker on its public faces, to simulate
the defence); nothing here is the owner's alone: its key (``rl_mask.owner.key``), its faces
and its configuration stay in ``rl_mask.owner``. It imports neither ``owner``, ``attacks``
nor ``server`` (``tests/test_layering.py``).
"""
