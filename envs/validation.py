"""The reward's utility signal: the owner's validation score of the FR network, refreshed once
per ``rl.eval_every`` FR steps.

The env scores the network the server hands back (``TrainedModel``) on its own k = 1
encodings of the validation faces, which never cross (``rl_mask.use.held_out``). The sub-envs
of one env runner (``envs.inflight``) share one ``ValidationScore``: they observe the same
network, and each fetch-and-score (the weights cross back, the network is rebuilt and run on
the faces) happens while the FR server waits for the runner's next batches, so scoring it once
per runner, not once per sub-env, keeps the server busier.

Per setting (``rl.utility_credit=setting``): one validation accuracy per ``extra_removed``
choice, on the validation faces with that many more channels zeroed (``removal_views``), so
that a batch's utility penalty reads what its own setting leaves the FR network, not the one
accuracy every batch of the window shares: a shared penalty credits no action, and a policy
that removed channels kept its reward while its network failed (Yale, issue 20). Channel
removal is the only knob that takes information from a face at k = 1; k, the weights and the
labels only mix, and the flips are the k = 1 messages' own (``mask.eval_flip``).
"""

from __future__ import annotations

from rl_mask.mask.settings import MaskSettings
from rl_mask.use.held_out import HeldOutSet, rebuild, score_model


class ValidationScore:
    def __init__(self, fr, held_out: HeldOutSet, eval_every: int, views: dict[int, HeldOutSet] | None = None):
        """``fr``: the env's FR client (``envs.fr_client``); ``views``: per ``extra_removed``
        choice, the validation faces as it leaves them (none: every setting reads ``accuracy``)."""
        self.fr = fr
        self.held_out = held_out
        self.eval_every = eval_every
        self.views = dict(views or {})
        self.accuracy = 0.0
        self.view_accuracy = {extra: 0.0 for extra in self.views}
        self.scored_step: int | None = None  # the FR step of the network last scored

    def update(self, fr_step: int) -> None:
        """Score the network again if ``fr_step`` has passed the window of the one last scored
        (a sharer may have scored a later network already: then nothing to do)."""
        if self.scored_step is not None and fr_step // self.eval_every <= self.scored_step // self.eval_every:
            return
        trained = self.fr.call("trained_model")
        model = rebuild(trained)
        self.accuracy = float(score_model(model, self.held_out)["identification_acc"])
        self.view_accuracy = {extra: float(score_model(model, view)["identification_acc"]) for extra, view in self.views.items()}
        self.scored_step = trained.fr_step

    def accuracy_for(self, settings: MaskSettings) -> float:
        """The validation accuracy a batch made with ``settings`` is rewarded with: its channel
        removal's view, or the shared accuracy without views."""
        return self.view_accuracy.get(settings.extra_removed, self.accuracy) if self.views else self.accuracy
