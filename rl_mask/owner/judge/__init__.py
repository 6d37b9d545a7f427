"""Privacy and utility metrics: PSNR/SSIM, the independent evaluation model, identity leak,
KNN distance and the combined privacy score."""

from rl_mask.owner.judge.evaluator import EvaluationModel, judge_report, train_evaluation_model
from rl_mask.owner.judge.image import best_match, psnr, ssim
from rl_mask.owner.judge.privacy import ALPHA, BETA, PrivacyJudge, ScoringKey, privacy_score, scoring_key

__all__ = ["ALPHA", "BETA", "EvaluationModel", "PrivacyJudge", "ScoringKey", "best_match", "judge_report", "privacy_score", "scoring_key", "psnr", "ssim", "train_evaluation_model"]
