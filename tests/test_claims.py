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


def test_stored_claims_reads_back_what_claims_table_showed(tmp_path):
    import json

    from fashionlab.eval.claims import Claim, claims_table, stored_claims

    table = claims_table([Claim("paper X, Fig. 1", "a & b < c", "0.12 vs 0.34", [True, False]),
                          Claim("this book (goal)", "it runs", "yes", True, "goal")])
    cell = {"cell_type": "code", "source": ["claims_table([...])"], "metadata": {}, "execution_count": 1,
            "outputs": [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                         "data": {"text/html": table.to_html(), "text/plain": str(table)}}]}
    path = tmp_path / "05_x.ipynb"
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    back = stored_claims(path)
    assert back.values.tolist() == table.values.tolist()
    cell["outputs"] = []
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(ValueError, match="no claims table"):
        stored_claims(path)


def test_the_reproduction_report_covers_every_chapter():
    from pathlib import Path

    from fashionlab.eval.claims import reproduction_report

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    report = reproduction_report(notebooks)
    chapters = {p.stem for p in notebooks.glob("[0-9][0-9]_*.ipynb") if not p.stem.startswith("99")}
    assert set(report.chapter) == chapters
    assert report.verdict.isin(["reproduced", "not reproduced", "partly", "met", "not met", "partly met",
                                "not tested here", "not comparable at this scale"]).all()


def test_a_claim_at_another_scale_is_not_comparable_whatever_its_checks():
    for checks in (True, False, None):
        row = Claim("001 §3.1", "1-8 min per pair on a GPU", "0.5 min on 2 CPU cores, another model", checks,
                    comparable=False)
        assert row.verdict == "not comparable at this scale"
    assert Claim("p", "c", "m", True).verdict == "reproduced"
    with pytest.raises(ValueError, match="goal is ours"):
        Claim("this book (goal)", "c", "m", True, "goal", comparable=False)
    table = claims_table([Claim("p", "c", "m", None), Claim("p", "c", "m", True, comparable=False)])
    assert table.verdict.tolist() == ["not tested here", "not comparable at this scale"]
