"""rtsseg.attention: attention capture with hooks, DINO-style 60%-mass masks, Jaccard, figures."""

from rtsseg.attention.capture import AttentionRecorder, capture_attention, capture_attention_weights, unfused_attention

__all__ = ["AttentionRecorder", "capture_attention", "capture_attention_weights", "unfused_attention"]
from rtsseg.attention.masks import (box_mask, class_mask, head_scores, jaccard, mass_in_mask, mass_mask,  # noqa: E402
                                   upsample_maps)

__all__ += ["box_mask", "class_mask", "head_scores", "jaccard", "mass_in_mask", "mass_mask", "upsample_maps"]
from rtsseg.attention.supervision import box_attention_loss, box_token_mask, mask_attention_loss  # noqa: E402

__all__ += ["box_attention_loss", "box_token_mask", "mask_attention_loss"]
from rtsseg.attention.evaluate import (AttentionScores, attention_scores, jaccard_chance, map_scores,  # noqa: E402
                                       paired_difference, planted_maps)

__all__ += ["AttentionScores", "attention_scores", "jaccard_chance", "map_scores", "paired_difference",
            "planted_maps"]
