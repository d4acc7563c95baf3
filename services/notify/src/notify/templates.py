"""The texts a partner reads in an e-mail or an SMS: Bahasa Indonesia by default, English on
request (the agency's ``language`` in the directory).

They carry only what a partner needs to act and nothing that identifies anyone: the
pseudonymous case id, the service, the priority and the acknowledgement deadline, and where to
acknowledge and read the details (intake's disclosure endpoint, which checks the partner's
token and records every read).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from string import Template

from notify.directory import Language
from rujuk_contracts.events import Priority, ReferralRequested, Service

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
    },
    Language.ENGLISH: {
        Service.HEALTH: "health care",
        Service.POLICE: "law enforcement (PPA unit)",
        Service.SHELTER: "safe house",
        Service.PSYCHOSOCIAL: "psychosocial support",
        Service.LEGAL: "legal aid",
        Service.SOCIAL: "social services",
        Service.CASE_MANAGEMENT: "case management",
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
