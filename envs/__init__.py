"""Gymnasium environments of rl-mask."""

from envs.hybrid_masking import HybridMaskingEnv

__all__ = ["HybridMaskingEnv"]
