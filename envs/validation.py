"""The reward's utility signal: the owner's validation score of the FR network, refreshed once
per ``rl.eval_every`` FR steps.

The env scores the network the server hands back (``TrainedModel``) on its own k = 1
encodings of the validation faces, which never cross (``rl_mask.use.held_out``). The sub-envs
of one env runner (``envs.inflight``) share one ``ValidationScore``: they observe the same
network, and each fetch-and-score (the weights cross back, the network is rebuilt and run on
the faces) happens while the FR server waits for the runner's next batches, so scoring it once
per runner, not once per sub-env, keeps the server busier.
"""

from __future__ import annotations

from rl_mask.use.held_out import HeldOutSet, score_trained


class ValidationScore:
    def __init__(self, fr, held_out: HeldOutSet, eval_every: int):
        """``fr``: the env's FR client (``envs.fr_client``)."""
        self.fr = fr
        self.held_out = held_out
        self.eval_every = eval_every
        self.accuracy = 0.0
        self.scored_step: int | None = None  # the FR step of the network last scored

    def update(self, fr_step: int) -> None:
        """Score the network again if ``fr_step`` has passed the window of the one last scored
        (a sharer may have scored a later network already: then nothing to do)."""
        if self.scored_step is not None and fr_step // self.eval_every <= self.scored_step // self.eval_every:
            return
        trained = self.fr.call("trained_model")
        self.accuracy = float(score_trained(trained, self.held_out)["identification_acc"])
        self.scored_step = trained.fr_step
