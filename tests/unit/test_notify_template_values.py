"""Details of the partner messages: the details link under any intake URL, and an SMS has no
subject (issue 26: each test here kills mutants of notify/templates.py that survived)."""

import pytest

from notify.directory import Language
from notify.templates import Rendered, render_email, render_sms
from tests.unit.test_notify_templates import referral

DETAILS = "/v1/cases/3513-AB12CD34EF/details"


@pytest.mark.parametrize(
    ("intake_url", "base"),
    [
        ("https://intake.contoh.example/", "https://intake.contoh.example"),
        ("https://contoh.example/ruang-X//", "https://contoh.example/ruang-X"),
    ],
)
def test_the_details_link_has_one_slash_whatever_the_intake_url_ends_with(
    intake_url: str, base: str
) -> None:
    for rendered in (
        render_sms(referral(), Language.ENGLISH, intake_url),
        render_email(referral(), Language.ENGLISH, intake_url),
    ):
        assert f" {base}{DETAILS}" in rendered.text


def test_an_sms_has_an_empty_subject() -> None:
    sms = render_sms(referral(), Language.INDONESIAN, "https://intake.contoh.example")
    assert sms == Rendered(subject="", text=sms.text)
