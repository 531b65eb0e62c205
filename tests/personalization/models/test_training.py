"""What the segment model and the reward model share: the split, the card facts, the file types."""

from __future__ import annotations

import pytest

from personalization.models import policy, segment_model
from personalization.models.training import (
    PIPELINE_TYPES,
    ordered_features,
    time_split,
    training_window,
)


def test_the_newest_rows_by_time_are_held_out_ties_in_row_order() -> None:
    train, valid = time_split(5, [5.0, 1.0, 3.0, 3.0, 2.0], "segment model")
    assert (train, valid) == ([1, 4, 2, 3], [0])
    assert time_split(10, None, "reward model") == (list(range(8)), [8, 9])
    with pytest.raises(ValueError, match="2 rows are too few to train and validate a reward model"):
        time_split(2, None, "reward model")


def test_card_facts() -> None:
    assert ordered_features({"trait_b", "visits", "channel", "trait_a"}) == ("channel", "visits", "trait_a", "trait_b")
    assert training_window(None) is None
    assert training_window([86_400.0, 0.0]) == {"start": "1970-01-01T00:00:00+00:00", "end": "1970-01-02T00:00:00+00:00"}


def test_each_model_trusts_the_shared_pipeline_types_and_only_its_own_classifier_besides() -> None:
    assert set(policy.TRUSTED_TYPES) == set(PIPELINE_TYPES)
    assert set(segment_model.TRUSTED_TYPES) - set(PIPELINE_TYPES) == {"sklearn.multioutput.MultiOutputClassifier"}
