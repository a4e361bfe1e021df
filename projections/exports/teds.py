"""SAMHSA TEDS admission and discharge records from episodes' verified histories.

One treatment episode in TEDS terms is one service setting: the plan's start
admits the client to intensive outpatient (SERVICES 6); a step-down out of
IOP is a change of service, so it discharges from setting 6 with REASON 4
(transferred) and admits to non-intensive outpatient (7) on the same day;
the discharge closes whichever setting the client is in. Fields the engine
does not record are -9 (TEDS's missing/not collected) with the reason, field
by field in docs/teds.md.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from iop_episodes.domain.weeks import local

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from iop_episodes.domain.events import EpisodeEvent

Kind = Literal["admission", "discharge"]
MISSING = -9
SERVICES_IOP, SERVICES_OUTPATIENT = 6, 7
REASON_TRANSFERRED = 4

SUBSTANCE_CODES = {
    "alcohol": 2,
    "cocaine": 3,
    "cannabis": 4,
    "methadone": 6,  # non-prescription methadone
    "opiates": 7,  # other opiates and synthetics: the engine does not tell heroin apart
    "fentanyl": 7,
    "oxycodone": 7,
    "buprenorphine": 7,
    "methamphetamine": 10,
    "amphetamines": 11,
    "benzodiazepines": 13,
}
NO_SUBSTANCE = 1  # SUB2/SUB3 "none"
PSOURCE = {
    "after_inpatient_or_residential": 2,  # alcohol/drug use care provider
    "after_partial_hospitalization": 2,
    "from_sober_living": 6,  # other community referral
    "primary_treatment": 1,  # individual, including self-referral
    "relapse_prevention_refresher": 1,
}
PRIMPAY = {"self_pay": 1, "private_insurance": 2, "medicare": 3, "medicaid": 4}
LOS_BUCKETS = ((45, 31), (60, 32), (90, 33), (120, 34), (180, 35), (365, 36))
LOS_OVER_A_YEAR = 37

NOT_RECORDED = "not recorded by the engine"
UNFILLED_ADMISSION = {
    "GENDER": NOT_RECORDED,
    "RACE": NOT_RECORDED,
    "ETHNIC": NOT_RECORDED,
    "MARSTAT": NOT_RECORDED,
    "EDUC": NOT_RECORDED,
    "EMPLOY": NOT_RECORDED,
    "LIVARAG": NOT_RECORDED,
    "ARRESTS": NOT_RECORDED,
    "VET": NOT_RECORDED,
    "PREG": NOT_RECORDED,
    "NOPRIOR": "prior treatment episodes are not recorded at assessment",
    "DSMCRIT": "no diagnosis is recorded by the engine",
    "ROUTE1": "route of use is not recorded at assessment",
    "FREQ1": "frequency of use is not recorded at assessment",
    "FRSTUSE1": "age at first use is not recorded at assessment",
}
UNFILLED_DISCHARGE = {
    "SUB1_D": "substance use at discharge is not recorded",
    "FREQ1_D": "frequency of use at discharge is not recorded",
    "EMPLOY_D": NOT_RECORDED,
    "LIVARAG_D": NOT_RECORDED,
    "ARRESTS_D": NOT_RECORDED,
    "FREQ_ATND_SELF_HELP_D": "self-help attendance is not recorded",
}
ADMISSION_FIELDS = (
    "RECORD_TYPE", "EPISODE_ID", "CLIENT_ID", "TRANSFER", "ADMDATE", "DOB", "SERVICES",
    "PSOURCE", "PRIMPAY", "SUB1", "SUB2", "SUB3", *UNFILLED_ADMISSION,
)  # fmt: skip
DISCHARGE_FIELDS = (
    "RECORD_TYPE", "EPISODE_ID", "CLIENT_ID", "TRANSFER", "ADMDATE", "DISDATE", "SERVICES_D",
    "REASON", "LOS", "LOS_DAYS", "PSOURCE", "PRIMPAY", "SUB1", "SUB2", "SUB3",
    *UNFILLED_DISCHARGE,
)  # fmt: skip


def los_code(days: int) -> int:
    """TEDS-D LOS: 1-30 days exactly, then 31 (31-45), 32 (46-60) ... 36 (181-365), 37."""
    if days <= 30:
        return max(1, days)
    for upper, code in LOS_BUCKETS:
        if days <= upper:
            return code
    return LOS_OVER_A_YEAR


def stay_days(admitted: date, discharged: date) -> int:
    """Days from admission to discharge; a same-day discharge is 1 (TEDS-D has no 0)."""
    return max(1, (discharged - admitted).days)


@dataclass(frozen=True)
class TedsRecord:
    kind: Kind
    day: date
    episode_id: UUID
    fields: dict[str, Any]
    unfilled: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"record": self.fields, "unfilled": self.unfilled}


def substance_codes(substances: Sequence[str]) -> list[int]:
    """SUB1-SUB3: the first three distinct TEDS codes, then 1 (none)."""
    found: list[int] = []
    for substance in substances:
        code = SUBSTANCE_CODES[substance]
        if code not in found:
            found.append(code)
    return [*found[:3], *[NO_SUBSTANCE] * (3 - min(3, len(found)))]


def episode_records(history: Sequence[EpisodeEvent]) -> list[TedsRecord]:
    """The admissions and discharges one episode's entries make, in order."""
    assessed = history[0].payload
    timezone = assessed["program_timezone"]
    episode_id = UUID(str(history[0].originator_id))
    subs = substance_codes(assessed["primary_substances"])
    common = {
        "EPISODE_ID": str(episode_id),
        "CLIENT_ID": assessed["client_ref"],
        "PSOURCE": PSOURCE[assessed["entry_pathway"]],
        "PRIMPAY": PRIMPAY[assessed["payer"]],
        "SUB1": subs[0],
        "SUB2": subs[1],
        "SUB3": subs[2],
    }
    records: list[TedsRecord] = []
    admitted: tuple[date, int] | None = None  # the open stay: its date and setting
    for event in history:
        day = local(event.occurred_at, timezone).date()
        name = event.type_name()
        if name == "PlanCreated" and admitted is None:
            admitted = (day, SERVICES_IOP)
            records.append(_admission(common, day, assessed, SERVICES_IOP, transfer=False))
        elif name == "StepDown" and admitted is not None and admitted[1] == SERVICES_IOP:
            if event.payload["to_level"] != "1":
                continue  # fewer hours within IOP: the same service
            records.append(_discharge(common, admitted, day, REASON_TRANSFERRED, transfer=True))
            admitted = (day, SERVICES_OUTPATIENT)
            records.append(_admission(common, day, assessed, SERVICES_OUTPATIENT, transfer=True))
        elif name == "Discharged" and admitted is not None:
            reason = int(event.payload["reason"])
            records.append(_discharge(common, admitted, day, reason, transfer=False))
            admitted = None
    return records


def _admission(
    common: dict[str, Any], day: date, assessed: dict[str, Any], services: int, *, transfer: bool
) -> TedsRecord:
    values = {
        **common,
        "RECORD_TYPE": "A",
        "TRANSFER": 1 if transfer else 0,
        "ADMDATE": day.isoformat(),
        "DOB": assessed["birth_date"],
        "SERVICES": services,
        **dict.fromkeys(UNFILLED_ADMISSION, MISSING),
    }
    ordered = {name: values[name] for name in ADMISSION_FIELDS}
    episode_id = UUID(common["EPISODE_ID"])
    return TedsRecord("admission", day, episode_id, ordered, dict(UNFILLED_ADMISSION))


def _discharge(
    common: dict[str, Any],
    admitted: tuple[date, int],
    day: date,
    reason: int,
    *,
    transfer: bool,
) -> TedsRecord:
    days = stay_days(admitted[0], day)
    values = {
        **common,
        "RECORD_TYPE": "D",
        "TRANSFER": 1 if transfer else 0,
        "ADMDATE": admitted[0].isoformat(),
        "DISDATE": day.isoformat(),
        "SERVICES_D": admitted[1],
        "REASON": reason,
        "LOS": los_code(days),
        "LOS_DAYS": days,
        **dict.fromkeys(UNFILLED_DISCHARGE, MISSING),
    }
    ordered = {name: values[name] for name in DISCHARGE_FIELDS}
    episode_id = UUID(common["EPISODE_ID"])
    return TedsRecord("discharge", day, episode_id, ordered, dict(UNFILLED_DISCHARGE))


def records_in_period(
    histories: Iterable[Sequence[EpisodeEvent]], kind: Kind, start: date, end: date
) -> list[TedsRecord]:
    """Every record of ``kind`` dated ``start`` to ``end`` inclusive, by date then episode."""
    found = [
        record
        for history in histories
        for record in episode_records(history)
        if record.kind == kind and start <= record.day <= end
    ]
    return sorted(found, key=lambda r: (r.day, str(r.episode_id), r.fields["TRANSFER"]))


def to_csv(records: Sequence[TedsRecord], kind: Kind) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = ADMISSION_FIELDS if kind == "admission" else DISCHARGE_FIELDS
    writer.writerow(names)
    for record in records:
        writer.writerow([record.fields[name] for name in names])
    return out.getvalue().encode("ascii")


def to_json(records: Sequence[TedsRecord]) -> bytes:
    body = [record.as_json() for record in records]
    return (json.dumps(body, indent=2, sort_keys=False, ensure_ascii=True) + "\n").encode("ascii")
