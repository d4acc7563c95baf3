"""Paging the on-call list, the pure part: acknowledgement codes, how a typed reply names one,
which channels a page goes out on, and the pages' texts in both languages."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from notify.directory import AgencyChannels, Directory, Language
from notify.oncall import (
    CODE_ALPHABET,
    MAX_CANDIDATES,
    AckCode,
    acknowledged_by_reply,
    answered_channel,
    codes_in,
    is_code,
    new_ack_code,
    no_channel_reason,
    page_event_id,
    page_failed,
    page_id,
)
from notify.templates import render_page_email, render_page_sms
from routing.settings import SHIPPED_SOPS
from routing.sop.loader import load_sop_folder
from rujuk.samples import IDENTIFYING_IN_SAMPLES
from rujuk.stack import DEV_ON_CALL_DIRECTORY, Stack
from rujuk_contracts.events import (
    DeliveryChannel,
    EscalationReason,
    OnCallAcknowledged,
    OnCallAckVia,
    OnCallContact,
    OnCallPaged,
    OnCallPageFailed,
    Priority,
)

CONSOLE = "https://konsol.contoh.example/"
CODE = "7KQ2M9XD"
SMS, EMAIL, WEBHOOK, NATS = (DeliveryChannel.SMS, DeliveryChannel.EMAIL,
                             DeliveryChannel.WEBHOOK, DeliveryChannel.NATS)  # fmt: skip


def paged(round_: int = 1, *, last: bool = False) -> OnCallPaged:
    return OnCallPaged(
        case_id="3514-AB12CD34EF",
        alert_id="alert-0001",
        referral_id="3514-AB12CD34EF-01",
        agency_id="dp3ap2kb-pasuruan",
        priority=Priority.EMERGENCY,
        reason=EscalationReason.DEADLINE_MISSED,
        round=round_,
        rounds=3,
        next_round_at=None if last else datetime(2026, 11, 2, 3, 10, tzinfo=UTC),
        contacts=[OnCallContact(contact_id="piket-uptppa-pasuruan", channels=[SMS, WEBHOOK])],
        sop_id="sop-3514",
        sop_version=1,
    )


# --- codes ---------------------------------------------------------------------------------


def test_a_new_code_is_eight_crockford_characters_with_a_digit_and_a_letter() -> None:
    codes = {new_ack_code() for _ in range(2000)}
    assert len(codes) == 2000  # drawn at random, not from a small set
    for code in codes:
        assert len(code) == 8
        assert set(code) <= set(CODE_ALPHABET)
        assert not set(code) & set("ILOU")
        assert any(c.isdigit() for c in code)
        assert any(c.isalpha() for c in code)
        assert is_code(code)
    used = {c for code in codes for c in code}
    assert used == set(CODE_ALPHABET)  # every character of the alphabet turns up


@pytest.mark.parametrize(
    "text",
    [
        CODE,
        "7kq2m9xd",
        "OK 7KQ2M9XD",
        "ok, 7kq2m9xd!",
        "ACK:7KQ2M9XD",
        "TERIMA 7KQ2M9XD terima kasih",
        "  7KQ2-M9XD  ",
        "Siap. Kode 7KQ2M9XD.\n\n> rujuk PIKET DARURAT ... balas OK 7KQ2M9XD",
    ],
)
def test_a_reply_names_its_code_whatever_is_typed_around_it(text: str) -> None:
    assert codes_in(text) == [CODE]


def test_letters_typed_for_digits_are_read_as_crockford_says() -> None:
    assert codes_in("ok 1o2LABCD") == ["1021ABCD"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "OK",
        "TERIMA KASIH, SAYA TANGANI",
        "ANSWERED",  # eight letters: a word, not a code
        "12345678",  # eight digits: a number, not a code
        "7KQ2M9X",  # seven
        "7KQ2M9XDD",  # nine
        "3514-AB12CD34EF",  # a case id
        "7KQ2M9XU",  # U is not Crockford
        "7KQ2_M9XD",
    ],
)
def test_no_code_is_found_where_there_is_none(text: str) -> None:
    assert codes_in(text) == []


def test_a_reply_full_of_candidates_is_looked_up_a_few_at_a_time_only() -> None:
    guesses = " ".join(f"{n:04d}ABCD" for n in range(1000))
    found = codes_in(guesses)
    assert len(found) == MAX_CANDIDATES
    assert found[0] == "0000ABCD"


def test_each_candidate_once_in_the_order_typed() -> None:
    assert codes_in("9ZZZ1111 OK 7KQ2M9XD 9zzz1111") == ["9ZZZ1111", CODE]


def test_a_page_id_names_the_alert_the_round_and_the_contact() -> None:
    assert page_id("alert-0001", 2, "piket-uptppa-pasuruan") == (
        "alert-0001-r2-piket-uptppa-pasuruan"
    )


# --- channels ---------------------------------------------------------------------------------


def directory(base_url: str | None = None) -> Directory:
    return Directory(
        {
            "piket-uptppa-pasuruan": AgencyChannels(sms_number="+62 800-0000-0101"),
            "kepala-dp3ap2kb-pasuruan": AgencyChannels(
                email="kepala@dp3ap2kb.contoh.example", sms_number="+62 800-0000-0102"
            ),
        },
        base_url,
    )


def test_a_page_goes_on_the_channels_with_an_address_and_a_sender() -> None:
    usable, missing = directory().page_channels(
        "kepala-dp3ap2kb-pasuruan", [SMS, EMAIL], {NATS, WEBHOOK, SMS, EMAIL}
    )
    assert (usable, missing) == ([SMS, EMAIL], [])


def test_a_page_never_goes_on_the_nats_feed_and_says_why_a_channel_is_left_out() -> None:
    usable, missing = directory().page_channels(
        "piket-uptppa-pasuruan", [NATS, SMS, WEBHOOK, EMAIL], {NATS, WEBHOOK, EMAIL}
    )
    assert usable == []
    assert missing == [
        "nats: pages never go on the NATS feed",
        "sms: no SMS gateway configured (NOTIFY_SMS_GATEWAY_URL)",
        "webhook: no webhook_url in NOTIFY_PARTNERS_FILE (nor NOTIFY_WEBHOOK_BASE_URL) "
        "for 'piket-uptppa-pasuruan'",
        "email: no email in NOTIFY_PARTNERS_FILE for 'piket-uptppa-pasuruan'",
    ]


def test_a_contact_missing_from_the_directory_is_named_as_such() -> None:
    usable, missing = directory("https://hooks.contoh.example").page_channels(
        "piket-lain", [SMS, WEBHOOK], {WEBHOOK, SMS}
    )
    assert usable == [WEBHOOK]  # the base URL gives every id a webhook, as for agencies
    assert missing == [
        "sms: no sms_number in NOTIFY_PARTNERS_FILE for 'piket-lain'",
        "'piket-lain' is not in NOTIFY_PARTNERS_FILE",
    ]


def test_a_page_that_cannot_go_out_is_reported_failed_with_the_reason() -> None:
    event = page_failed(paged(2), "piket-uptppa-pasuruan", "no usable channel", 0, None)
    again = page_failed(paged(2), "piket-uptppa-pasuruan", "no usable channel", 0, None)
    assert event.id == again.id  # derived: staging it twice publishes it once
    assert event.id != page_failed(paged(3), "piket-uptppa-pasuruan", "x", 0, None).id
    payload = OnCallPageFailed.model_validate(event.data)
    assert (payload.alert_id, payload.round, payload.contact_id, payload.attempts) == (
        "alert-0001", 2, "piket-uptppa-pasuruan", 0,
    )  # fmt: skip


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_the_reason_a_page_cannot_go_out_names_each_missing_channel_within_500() -> None:
    assert no_channel_reason("piket-x", ["sms: a", "email: b"]) == (
        "no usable channel for 'piket-x': sms: a; email: b"
    )
    assert len(no_channel_reason("piket-x", ["x" * 600])) == 500


def test_a_failed_page_is_one_event_per_alert_round_and_contact_in_the_trace() -> None:
    event = page_failed(paged(2), "piket-uptppa-pasuruan", "r" * 600, 8, TRACEPARENT)
    assert event.id == page_event_id("alert-0001-r2-piket-uptppa-pasuruan", "page_failed")
    assert event.id != page_failed(paged(2), "piket-lain", "r", 8, None).id
    other_alert = paged(2).model_copy(update={"alert_id": "alert-0002"})
    assert event.id != page_failed(other_alert, "piket-uptppa-pasuruan", "r", 8, None).id
    assert event.traceparent == TRACEPARENT
    assert OnCallPageFailed.model_validate(event.data).reason == "r" * 500


# --- replies --------------------------------------------------------------------------------


def code(*channels: str) -> AckCode:
    return AckCode(CODE, "alert-0001", "3514-AB12CD34EF", "piket-uptppa-pasuruan", list(channels))


def test_the_channel_a_reply_answers() -> None:
    assert answered_channel(code("sms", "webhook"), SMS) == SMS
    assert answered_channel(code("sms", "webhook"), EMAIL) is None  # not paged by e-mail
    assert answered_channel(code("sms", "webhook"), None) is None
    assert answered_channel(code("sms"), None) == SMS  # the only page it can answer
    assert answered_channel(code("sms"), WEBHOOK) == SMS


def test_each_counted_reply_is_its_own_event_by_the_contact_never_a_person() -> None:
    first = acknowledged_by_reply(code("sms"), SMS, 1, None)
    second = acknowledged_by_reply(code("sms"), SMS, 2, None)
    assert first.id != second.id
    assert first.id == acknowledged_by_reply(code("sms"), SMS, 1, None).id
    payload = OnCallAcknowledged.model_validate(first.data)
    assert payload.via == OnCallAckVia.REPLY
    assert payload.by == "piket-uptppa-pasuruan"
    assert payload.channel == SMS
    assert CODE not in first.to_bytes().decode()  # the code is a credential: not in events
    assert acknowledged_by_reply(code("sms"), SMS, 1, TRACEPARENT).traceparent == TRACEPARENT


# --- texts ----------------------------------------------------------------------------------


def test_the_sms_page_in_indonesian_says_what_to_do_in_two_segments() -> None:
    sms = render_page_sms(paged(2), Language.INDONESIAN, CODE, CONSOLE)
    assert sms.subject == ""
    assert sms.text == (
        "rujuk PIKET DARURAT, Kab. Pasuruan (3514): rujukan kasus 3514-AB12CD34EF tidak "
        "dijawab oleh dp3ap2kb-pasuruan. Panggilan 2 dari 3. Konfirmasi: balas OK 7KQ2M9XD atau "
        "buka https://konsol.contoh.example/coordinator"
    )
    assert len(sms.text) <= 320
    assert CODE in codes_in(sms.text)  # a reply quoting the page still names the code


def test_the_sms_page_in_english() -> None:
    sms = render_page_sms(paged(1), Language.ENGLISH, CODE, CONSOLE)
    assert sms.text == (
        "rujuk ON-CALL EMERGENCY, Pasuruan Regency (3514): referral of case 3514-AB12CD34EF "
        "not answered by dp3ap2kb-pasuruan. Page 1 of 3. Acknowledge: reply OK 7KQ2M9XD or "
        "open https://konsol.contoh.example/coordinator"
    )
    assert len(sms.text) <= 320


def test_the_email_page_in_indonesian() -> None:
    mail = render_page_email(paged(1), Language.INDONESIAN, CODE, CONSOLE)
    assert mail.subject == (
        "[rujuk] PIKET DARURAT: kasus 3514-AB12CD34EF tidak dijawab (panggilan 1/3)"
    )
    for line in (
        "  Kabupaten        : Kab. Pasuruan (3514)\n",
        "  Nomor kasus      : 3514-AB12CD34EF\n",
        "  Prioritas        : DARURAT\n",
        "  Tidak menjawab   : dp3ap2kb-pasuruan\n",
        "  Alasan           : batas konfirmasi terlewati\n",
        "  Panggilan        : 1 dari 3 (berikutnya 02-11-2026 10:10 WIB)\n",
        "  - balas dengan kode konfirmasi Anda: OK 7KQ2M9XD\n",
        "  - atau di konsol koordinator: https://konsol.contoh.example/coordinator\n",
    ):
        assert line in mail.text


def test_the_email_page_in_english_on_the_last_round() -> None:
    mail = render_page_email(paged(3, last=True), Language.ENGLISH, CODE, CONSOLE)
    assert mail.subject == (
        "[rujuk] ON-CALL EMERGENCY: case 3514-AB12CD34EF unanswered (page 3 of 3)"
    )
    for line in (
        "  District         : Pasuruan Regency (3514)\n",
        "  Not answered by  : dp3ap2kb-pasuruan\n",
        "  Reason           : acknowledgement deadline missed\n",
        "  Page             : 3 of 3 (last page)\n",
        "  - reply with your acknowledgement code: OK 7KQ2M9XD\n",
    ):
        assert line in mail.text


@pytest.mark.parametrize("language", list(Language))
def test_a_page_carries_nothing_identifying_and_no_sop_internals(language: Language) -> None:
    for rendered in (
        render_page_sms(paged(), language, CODE, CONSOLE),
        render_page_email(paged(), language, CODE, CONSOLE),
    ):
        text = rendered.subject + rendered.text
        assert "sop-3514" not in text
        assert "alert-0001" not in text  # the code is how to answer, not the alert's id
        assert not [s for s in IDENTIFYING_IN_SAMPLES if s in text]


def test_a_district_without_a_name_shows_its_code() -> None:
    other = paged().model_copy(update={"case_id": "3599-AB12CD34EF"})
    text = render_page_sms(other, Language.ENGLISH, CODE, CONSOLE).text
    assert text.startswith("rujuk ON-CALL EMERGENCY, 3599: referral of case 3599-AB12CD34EF")


# --- the development stack's directory ---------------------------------------------------------


def test_the_dev_stack_gives_every_shipped_on_call_role_invented_addresses(tmp_path: Path) -> None:
    library = load_sop_folder(SHIPPED_SOPS)
    assert library.refused == {}
    roles = {c.id for sop in library.sops.values() for c in sop.on_call.contacts}
    assert roles == set(DEV_ON_CALL_DIRECTORY)
    stack = Stack(tmp_path, external_nats_url="nats://127.0.0.1:1", external_database_url="x")
    env = stack.service_env("notify", 0)
    entries = Directory.load(Path(env["NOTIFY_PARTNERS_FILE"]), None)
    for sop in library.sops.values():
        for contact in sop.on_call.contacts:
            usable, missing = entries.page_channels(
                contact.id, contact.page_channels(), {SMS, EMAIL, WEBHOOK}
            )
            # Every channel but a webhook has its invented address; the webhook comes from
            # NOTIFY_WEBHOOK_BASE_URL where the stack is given one (the demo, the tests).
            assert [c for c in contact.page_channels() if c not in usable] in ([], [WEBHOOK])
            assert all(m.startswith("webhook:") for m in missing)
    for entry in DEV_ON_CALL_DIRECTORY.values():
        assert entry["sms_number"].startswith("+62 800-0000-")  # visibly invented
        assert entry["email"].endswith(".contoh.example")
    # Pages name the console, which starts after notify: its port is chosen first and kept.
    console = env["NOTIFY_CONSOLE_PUBLIC_URL"]
    assert console == stack.service_env("notify", 0)["NOTIFY_CONSOLE_PUBLIC_URL"]


def test_a_partners_file_given_to_the_stack_wins(tmp_path: Path) -> None:
    stack = Stack(tmp_path, external_nats_url="nats://127.0.0.1:1", external_database_url="x")
    stack.extra_env["NOTIFY_PARTNERS_FILE"] = "/etc/rujuk/partners.json"
    assert stack.service_env("notify", 0)["NOTIFY_PARTNERS_FILE"] == "/etc/rujuk/partners.json"


@pytest.mark.parametrize(
    ("console_url", "page"),
    [
        ("https://konsol.contoh.example", "https://konsol.contoh.example/coordinator"),
        ("https://contoh.example/ruang-X//", "https://contoh.example/ruang-X/coordinator"),
    ],
)
def test_the_console_link_has_one_slash_whatever_the_url_ends_with(
    console_url: str, page: str
) -> None:
    for rendered in (
        render_page_sms(paged(), Language.ENGLISH, CODE, console_url),
        render_page_email(paged(), Language.INDONESIAN, CODE, console_url),
    ):
        assert f" {page}" in rendered.text
