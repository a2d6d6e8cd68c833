import numpy as np
import pytest

from fashionlab.eval.claims import Claim, claims_table, verdict


def test_verdicts_follow_the_checks():
    assert verdict(True) == "reproduced"
    assert verdict(False) == "not reproduced"
    assert verdict([True, False]) == "partly"
    assert verdict(np.bool_(True), "goal") == "met"
    assert verdict([False, False], "goal") == "not met"
    assert verdict([True, False], "goal") == "partly met"
    assert verdict(None) == "not tested here"


def test_bad_claims_fail_clearly():
    with pytest.raises(ValueError, match="kind"):
        Claim("x", "y", "z", True, kind="opinion")
    with pytest.raises(ValueError, match="checks"):
        verdict([])
    with pytest.raises(ValueError, match="claims"):
        claims_table([])


def test_table_has_a_computed_verdict_column():
    table = claims_table([Claim("paper", "a > b", "1 vs 2", 1 > 2), Claim("goal", "c >= 0.9", "0.95", 0.95 >= 0.9, "goal")])
    assert table["verdict"].tolist() == ["not reproduced", "met"]
