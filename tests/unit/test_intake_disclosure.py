"""What a partner is shown of a case: select's nested subset and release without a vault
victim (issue 26: each test here kills mutants of intake/disclosure.py that survived)."""

from intake.disclosure import fields_for, release, select


def test_select_fills_every_absent_level_with_null() -> None:
    record = {"a": {"b": "CONTOH"}, "x": "not a mapping"}
    assert select(record, ["a.b", "p.q.r", "x.y.z"]) == {
        "a": {"b": "CONTOH"},
        "p": {"q": {"r": None}},
        "x": {"y": {"z": None}},
    }


def test_a_record_without_a_victim_still_gets_sex_and_disability_from_triage() -> None:
    shown = release({}, {"sex": "female", "disability": True}, ["shelter", "shelter"])
    assert shown.services == ["shelter"]
    assert shown.fields == fields_for(["shelter"])
    assert shown.details["victim"]["sex"] == "female"
    assert shown.details["victim"]["disability"] is True
    assert shown.details["victim"]["name"] is None
