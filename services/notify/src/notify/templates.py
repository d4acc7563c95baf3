"""The texts a partner reads in an e-mail or an SMS: Bahasa Indonesia by default, English on
request (the agency's ``language`` in the directory).

They carry only what a partner needs to act and nothing that identifies anyone: the
pseudonymous case id, the service, the priority and the acknowledgement deadline, and where to
acknowledge and read the details (intake's disclosure endpoint, which checks the partner's
token and records every read).

A page to an on-call contact (``render_page_sms``, ``render_page_email``) likewise: the
district, the case id, the priority, the agency that did not answer, the round, and how to
acknowledge (the contact's code, the console's coordinator page).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from string import Template

from notify.directory import Language
from rujuk_contracts.events import (
    EscalationReason,
    OnCallPaged,
    Priority,
    ReferralRequested,
    Service,
    district_of,
)

WIB = timezone(timedelta(hours=7), "WIB")  # the East Java districts' time

SERVICE_NAMES: dict[Language, dict[Service, str]] = {
    Language.INDONESIAN: {
        Service.HEALTH: "layanan kesehatan",
        Service.POLICE: "penegakan hukum (Unit PPA)",
        Service.SHELTER: "rumah aman",
        Service.PSYCHOSOCIAL: "pendampingan psikososial",
        Service.LEGAL: "bantuan hukum",
        Service.SOCIAL: "layanan sosial",
        Service.CASE_MANAGEMENT: "manajemen kasus",
        Service.MEDIATION: "mediasi",
    },
    Language.ENGLISH: {
        Service.HEALTH: "health care",
        Service.POLICE: "law enforcement (PPA unit)",
        Service.SHELTER: "safe house",
        Service.PSYCHOSOCIAL: "psychosocial support",
        Service.LEGAL: "legal aid",
        Service.SOCIAL: "social services",
        Service.CASE_MANAGEMENT: "case management",
        Service.MEDIATION: "mediation",
    },
}

PRIORITY_NAMES: dict[Language, dict[Priority, str]] = {
    Language.INDONESIAN: {
        Priority.EMERGENCY: "DARURAT",
        Priority.URGENT: "SEGERA",
        Priority.ROUTINE: "biasa",
    },
    Language.ENGLISH: {
        Priority.EMERGENCY: "EMERGENCY",
        Priority.URGENT: "URGENT",
        Priority.ROUTINE: "routine",
    },
}

SMS: dict[Language, Template] = {
    Language.INDONESIAN: Template(
        "rujuk: rujukan $priority_name $service_name, kasus $case_id. "
        "Konfirmasi sebelum $deadline. Detail: $details_url"
    ),
    Language.ENGLISH: Template(
        "rujuk: $priority_name referral for $service_name, case $case_id. "
        "Acknowledge by $deadline. Details: $details_url"
    ),
}

EMAIL_SUBJECT: dict[Language, Template] = {
    Language.INDONESIAN: Template("[rujuk] Rujukan $priority_name: $service_name, kasus $case_id"),
    Language.ENGLISH: Template("[rujuk] $priority_name referral: $service_name, case $case_id"),
}

EMAIL_BODY: dict[Language, Template] = {
    Language.INDONESIAN: Template(
        """Yth. petugas layanan,

Lembaga Anda menerima rujukan baru melalui rujuk.

  Nomor kasus     : $case_id
  Nomor rujukan   : $referral_id
  Layanan         : $service_name
  Prioritas       : $priority_name
  Batas konfirmasi: $deadline

Mohon konfirmasi penerimaan rujukan ini sebelum batas waktu di atas, melalui feed NATS,
webhook, atau POST $replies_url (jenis balasan: acknowledge). Jika tidak ada konfirmasi,
rujukan akan dieskalasi sesuai SOP.

Data identitas korban tidak dikirim melalui e-mail. Baca detail kasus yang Anda perlukan
dengan token lembaga Anda di:
  GET $details_url
Setiap akses dicatat.

Pesan ini dikirim otomatis oleh rujuk; jangan membalas e-mail ini.
"""
    ),
    Language.ENGLISH: Template(
        """Dear service desk,

Your agency has received a new referral through rujuk.

  Case id               : $case_id
  Referral id           : $referral_id
  Service               : $service_name
  Priority              : $priority_name
  Acknowledge by        : $deadline

Please acknowledge this referral before the deadline above, on your NATS feed, your webhook
or with POST $replies_url (reply kind: acknowledge). Without an acknowledgement the referral
is escalated as the SOP says.

No identifying data is sent by e-mail. Read the case details you need with your agency's
token at:
  GET $details_url
Every read is recorded.

This message was sent automatically by rujuk; do not reply to this e-mail.
"""
    ),
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str


def _values(referral: ReferralRequested, language: Language, intake_url: str) -> dict[str, str]:
    base = intake_url.rstrip("/")
    return {
        "case_id": referral.case_id,
        "referral_id": referral.referral_id,
        "service_name": SERVICE_NAMES[language][referral.service],
        "priority_name": PRIORITY_NAMES[language][referral.priority],
        "deadline": format_deadline(referral.acknowledgement_deadline),
        "details_url": f"{base}/v1/cases/{referral.case_id}/details",
        "replies_url": f"/v1/referrals/{referral.referral_id}/replies",
    }


def render_sms(referral: ReferralRequested, language: Language, intake_url: str) -> Rendered:
    text = SMS[language].substitute(_values(referral, language, intake_url))
    return Rendered(subject="", text=text)


def render_email(referral: ReferralRequested, language: Language, intake_url: str) -> Rendered:
    values = _values(referral, language, intake_url)
    return Rendered(
        subject=EMAIL_SUBJECT[language].substitute(values),
        text=EMAIL_BODY[language].substitute(values),
    )


def format_deadline(moment: datetime) -> str:
    return moment.astimezone(WIB).strftime("%d-%m-%Y %H:%M WIB")


# --- pages to the on-call list ---------------------------------------------------------------

DISTRICT_NAMES: dict[Language, dict[str, str]] = {
    Language.INDONESIAN: {"3513": "Kab. Probolinggo", "3514": "Kab. Pasuruan"},
    Language.ENGLISH: {"3513": "Probolinggo Regency", "3514": "Pasuruan Regency"},
}

REASON_NAMES: dict[Language, dict[EscalationReason, str]] = {
    Language.INDONESIAN: {
        EscalationReason.DEADLINE_MISSED: "batas konfirmasi terlewati",
        EscalationReason.DECLINED: "rujukan ditolak",
        EscalationReason.DELIVERY_FAILED: "rujukan gagal terkirim",
    },
    Language.ENGLISH: {
        EscalationReason.DEADLINE_MISSED: "acknowledgement deadline missed",
        EscalationReason.DECLINED: "referral declined",
        EscalationReason.DELIVERY_FAILED: "referral could not be delivered",
    },
}

NEXT_ROUND: dict[Language, Template] = {
    Language.INDONESIAN: Template("berikutnya $at"),
    Language.ENGLISH: Template("next at $at"),
}
LAST_ROUND: dict[Language, str] = {
    Language.INDONESIAN: "panggilan terakhir",
    Language.ENGLISH: "last page",
}

PAGE_SMS: dict[Language, Template] = {
    Language.INDONESIAN: Template(
        "rujuk PIKET $priority_name, $district: rujukan kasus $case_id tidak dijawab oleh "
        "$agency_id. Panggilan $round dari $rounds. Konfirmasi: balas OK $code atau buka "
        "$console_url"
    ),
    Language.ENGLISH: Template(
        "rujuk ON-CALL $priority_name, $district: referral of case $case_id not answered by "
        "$agency_id. Page $round of $rounds. Acknowledge: reply OK $code or open "
        "$console_url"
    ),
}

PAGE_EMAIL_SUBJECT: dict[Language, Template] = {
    Language.INDONESIAN: Template(
        "[rujuk] PIKET $priority_name: kasus $case_id tidak dijawab (panggilan $round/$rounds)"
    ),
    Language.ENGLISH: Template(
        "[rujuk] ON-CALL $priority_name: case $case_id unanswered (page $round of $rounds)"
    ),
}

PAGE_EMAIL_BODY: dict[Language, Template] = {
    Language.INDONESIAN: Template(
        """Yth. petugas piket,

Sebuah rujukan tidak dijawab oleh seluruh rantai eskalasinya, koordinator termasuk. Sesuai
SOP, Anda dipanggil sebagai petugas piket.

  Kabupaten        : $district
  Nomor kasus      : $case_id
  Prioritas        : $priority_name
  Tidak menjawab   : $agency_id
  Alasan           : $reason_name
  Panggilan        : $round dari $rounds ($next_round)

Konfirmasi bahwa Anda menangani peringatan ini:
  - balas dengan kode konfirmasi Anda: OK $code
  - atau di konsol koordinator: $console_url

Panggilan diulang sampai ada yang mengonfirmasi. Data identitas korban tidak dikirim melalui
e-mail; baca detail kasus di konsol.

Pesan ini dikirim otomatis oleh rujuk.
"""
    ),
    Language.ENGLISH: Template(
        """Dear duty officer,

A referral was not answered by anyone in its escalation chain, the coordinator included. As
the SOP says, you are paged as the person on call.

  District         : $district
  Case id          : $case_id
  Priority         : $priority_name
  Not answered by  : $agency_id
  Reason           : $reason_name
  Page             : $round of $rounds ($next_round)

Acknowledge that you are taking this alert:
  - reply with your acknowledgement code: OK $code
  - or in the coordinator's console: $console_url

Pages repeat until someone acknowledges. No identifying data is sent by e-mail; read the
case in the console.

This message was sent automatically by rujuk.
"""
    ),
}


def district_name(case_id: str, language: Language) -> str:
    """``Kab. Pasuruan (3514)``; a district without a name here shows its code."""
    code = district_of(case_id)
    name = DISTRICT_NAMES[language].get(code)
    return f"{name} ({code})" if name else code


def _page_values(
    paged: OnCallPaged, language: Language, code: str, console_url: str
) -> dict[str, str]:
    if paged.next_round_at is None:
        next_round = LAST_ROUND[language]
    else:
        next_round = NEXT_ROUND[language].substitute(at=format_deadline(paged.next_round_at))
    return {
        "case_id": paged.case_id,
        "district": district_name(paged.case_id, language),
        "priority_name": PRIORITY_NAMES[language][paged.priority],
        "agency_id": paged.agency_id,
        "reason_name": REASON_NAMES[language][paged.reason],
        "round": str(paged.round),
        "rounds": str(paged.rounds),
        "next_round": next_round,
        "code": code,
        "console_url": f"{console_url.rstrip('/')}/coordinator",
    }


def render_page_sms(
    paged: OnCallPaged, language: Language, code: str, console_url: str
) -> Rendered:
    text = PAGE_SMS[language].substitute(_page_values(paged, language, code, console_url))
    return Rendered(subject="", text=text)


def render_page_email(
    paged: OnCallPaged, language: Language, code: str, console_url: str
) -> Rendered:
    values = _page_values(paged, language, code, console_url)
    return Rendered(
        subject=PAGE_EMAIL_SUBJECT[language].substitute(values),
        text=PAGE_EMAIL_BODY[language].substitute(values),
    )
