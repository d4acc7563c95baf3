"""Sample reports for the demo: every person is invented, names and numbers visibly fake."""

from typing import Any

# NIK-shaped but invented: its first two digits are the province code, and there is no
# province 99, so no real person can hold it.
INVENTED_NIK = "9999000000000001"

# Identifying strings the samples carry (names, NIK, phone, address, village, narrative): none
# may leave intake's vault, so tests look for each in events, logs, traces and dumps.
IDENTIFYING_IN_SAMPLES = ["CONTOH Korban", "CONTOH Pelapor", INVENTED_NIK, "800-0000-0001",
                          "Jl. Fiktif", "SAMPLE narrative", "Desa Contoh"]  # fmt: skip

SAMPLE_REPORTS: list[dict[str, Any]] = [
    {
        "channel": "hotline",
        "district_code": "3514",
        "kecamatan": "Bangil",
        "village": "Desa Contoh (SAMPLE)",
        "victim": {
            "name": "CONTOH Korban Satu",
            "nik": INVENTED_NIK,
            "age_years": 14,
            "sex": "female",
            "phone": "+62 800-0000-0001",
            "address": "Jl. Fiktif No. 1 (SAMPLE)",
        },
        "reporter": {"name": "CONTOH Pelapor Satu", "relationship": "parent"},
        "incident": {
            "violence_types": ["sexual"],
            "narrative": "SAMPLE narrative, invented for the demo.",
        },
        "risk": {"injury": True, "hours_since_sexual_assault": 20, "perpetrator_has_access": True},
        "consent": {"share_with_health": True, "given_by": "guardian"},
    },
    {
        "channel": "walk_in",
        "district_code": "3514",
        "kecamatan": "Pandaan",
        "victim": {"name": "CONTOH Korban Dua", "age_years": 31, "sex": "female"},
        "reporter": {"relationship": "self"},
        "incident": {"violence_types": ["physical", "psychological"]},
        "risk": {"immediate_danger": True, "injury": True, "perpetrator_has_access": True},
        "consent": {"share_with_health": True, "share_with_shelter": True},
    },
    {
        "channel": "outreach",
        "district_code": "3514",
        "kecamatan": "Gempol",
        "victim": {"name": "CONTOH Korban Tiga", "age_years": 26, "sex": "female"},
        "reporter": {"relationship": "cadre"},
        "incident": {"violence_types": ["psychological"]},
        "consent": {"share_with_health": False, "share_with_police": False},
    },
    {
        "channel": "sapa_129",
        "district_code": "3513",
        "kecamatan": "Kraksaan",
        "victim": {"name": "CONTOH Korban Empat", "age_years": 9, "sex": "male"},
        "reporter": {"relationship": "teacher"},
        "incident": {"violence_types": ["neglect", "physical"]},
        "risk": {"injury": True},
    },
    {
        "channel": "partner_agency",
        "district_code": "3513",
        "kecamatan": "Paiton",
        "victim": {"name": "CONTOH Korban Lima", "age_years": 22, "sex": "female"},
        "reporter": {"relationship": "health_worker"},
        "incident": {"violence_types": ["sexual"]},
        "risk": {"hours_since_sexual_assault": 6, "injury": True},
        "consent": {
            "share_with_health": True,
            "share_with_police": True,
            "share_with_shelter": True,
        },
    },
]
