"""SpeechBrain's and WeSpeaker's (Kaldi) front ends against the features the libraries themselves
computed for the same clips (tests/data/make_front_end_references.py)."""
import os

import numpy as np
import pytest

from fixtures import REPO_ROOT
from src.data.front_ends import FRONT_ENDS, kaldi_fbank, speechbrain_fbank

REFERENCES = np.load(os.path.join(REPO_ROOT, "tests", "data", "front_ends.npz"))
CLIPS = 4


@pytest.mark.parametrize("name, front_end", [("speechbrain", speechbrain_fbank), ("kaldi", kaldi_fbank)])
@pytest.mark.parametrize("clip", range(CLIPS))
def test_features_equal_the_librarys_within_float32_rounding(name, front_end, clip):
    wave = REFERENCES[f"clip_{clip}"].astype(np.float32) / 32768.0
    expected = REFERENCES[f"{name}_{clip}"]
    found = front_end(wave)
    assert found.shape == expected.shape and found.dtype == np.float32
    # Float32 sums in another order, through logarithms of the smallest energies: 1e-4 of the range.
    assert np.abs(found - expected).max() <= 1e-4 * (expected.max() - expected.min())
    np.testing.assert_allclose(found.mean(axis=0), 0, atol=1e-4)


def test_frame_counts_follow_each_librarys_framing():
    assert speechbrain_fbank(np.full(1600, 0.1, np.float32)).shape == (11, 80)   # 1 + S // 160, centred
    assert kaldi_fbank(np.full(1600, 0.1, np.float32)).shape == (8, 80)          # 1 + (S - 400) // 160
    assert kaldi_fbank(np.full(400, 0.1, np.float32)).shape == (1, 80)
    with pytest.raises(ValueError, match="kaldi_fbank needs at least 400 samples, got 399"):
        kaldi_fbank(np.ones(399, np.float32))
    with pytest.raises(ValueError, match="non-empty 1-D waveform"):
        speechbrain_fbank(np.ones((2, 400), np.float32))
    assert set(FRONT_ENDS) == {"zoo", "speechbrain", "kaldi"}
