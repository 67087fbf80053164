"""The install report: what the walk test proved, as a file the installer leaves behind.

The JSON (walktest.WalkTest.result) is the record: language-neutral, for the platform or
a later audit. The Markdown (or HTML) is the same record for people, in the installer's
language and time zone; `safebox-install report FILE.json --lang en --html` renders it again
any time. The JSON's times are UTC; people see them in their zone with the offset written
out (localtime.py). What personal data it holds is said in it, in the reader's language
(docs/PRIVACY.md): the installer's name, the home id (which the platform links to the
resident), room names and the times of the visit; no resident's name, phone or address, no
key.
"""

from __future__ import annotations

import html
import json
from datetime import tzinfo
from pathlib import Path
from typing import Any

from safebox.tools.installer import localtime, messages
from safebox.tools.installer.messages import event_name, role_name, signal_name, status_name, t

_FIELDS = ("home_id", "hub_id", "platform", "started_at", "finished_at", "thresholds", "passed", "devices", "checks")


def is_report(doc: Any) -> bool:
    """Whether a JSON document has the shape of a walk test's result (walktest.WalkTest.result)."""
    return isinstance(doc, dict) and all(k in doc for k in _FIELDS) and isinstance(doc["devices"], list) \
        and isinstance(doc["checks"], list)


def problems(result: dict[str, Any], lang: str | None = None) -> list[str]:
    """Why a walk test did not pass, one sentence each."""
    out: list[str] = []
    devices = {d["id"]: d for d in result["devices"]}
    for c in result["checks"]:
        if c["status"] == "passed":
            continue
        key = {"waiting": "walk_problem_missing", "hub": "walk_problem_hub_only",
               "refused": "walk_problem_refused"}[c["status"]]
        out.append(t(key, lang, device=devices[c["device_id"]], event=c["event"]))
    for d in result["devices"]:
        if "signal" in d["problems"]:
            out.append(t("walk_problem_signal", lang, device=d, rssi=d["rssi_min"]))
        if "battery" in d["problems"]:
            out.append(t("walk_problem_battery", lang, device=d, battery=d["battery"]))
    if result.get("interrupted"):
        out.append(t("walk_interrupted", lang))
    return out


def _rows(result: dict[str, Any], lang: str | None, tz: tzinfo) -> tuple[list[list[str]], list[list[str]]]:
    dash = "-"
    devices = [[d["address"], role_name(d["role"], lang),
                d["room"] or dash, dash if d["battery"] is None else f"{d['battery']}%",
                dash if d["rssi_min"] is None else f"{d['rssi_min']} / {d['rssi_max']} dBm",
                signal_name(d["signal"], lang), f"{d['checks_passed']}/{d['checks_total']}"]
               for d in result["devices"]]
    checks = [[c["address"], event_name(c["event"], lang), status_name(c["status"], lang),
               dash if c["rssi"] is None else f"{c['rssi']} dBm ({signal_name(c['signal'], lang)})",
               c["event_id"] or dash, localtime.show(c["platform_at"], tz)]
              for c in result["checks"]]
    return devices, checks


def _headers(lang: str | None) -> tuple[list[str], list[str]]:
    return ([t(k, lang) for k in ("report_col_device", "report_col_role", "report_col_room", "report_col_battery",
                                  "report_col_signal", "report_col_verdict", "report_col_checks")],
            [t(k, lang) for k in ("report_col_device", "report_col_check", "report_col_status", "report_col_rssi",
                                  "report_col_event", "report_col_at")])


def _header_lines(result: dict[str, Any], lang: str | None, tz: tzinfo) -> list[tuple[str, str]]:
    th = result["thresholds"]
    span = t("report_span", lang, start=localtime.show(result["started_at"], tz),
             end=localtime.show(result["finished_at"], tz))
    return [
        (t("report_home", lang), result["home_id"]),
        (t("report_hub", lang), result["hub_id"]),
        (t("report_platform", lang), result["platform"]),
        (t("report_installer", lang), result.get("installer") or t("report_unknown", lang)),
        (t("report_time", lang), span),
        (t("report_result", lang), t("report_pass" if result["passed"] else "report_fail", lang)),
    ] + [("", t("report_thresholds", lang, good=th["rssi_good_dbm"], marginal=th["rssi_marginal_dbm"],
                battery=th["battery_low_pct"]))]


def markdown(result: dict[str, Any], lang: str | None = None, *, zone: tzinfo | None = None) -> str:
    tz = zone or localtime.zone()
    dev_rows, check_rows = _rows(result, lang, tz)
    dev_head, check_head = _headers(lang)

    def table(head: list[str], rows: list[list[str]]) -> list[str]:
        cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        return ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head),
                *["| " + " | ".join(map(cell, r)) + " |" for r in rows]]

    lines = [f"# {t('report_heading', lang, title=t('report_title', lang), home=result['home_id'])}", ""]
    for name, value in _header_lines(result, lang, tz):
        lines.append(f"- {t('report_item', lang, name=f'**{name}**', value=value)}" if name else f"- {value}")
    lines += ["", f"## {t('report_devices', lang)}", "", *table(dev_head, dev_rows),
              "", f"## {t('report_checks', lang)}", "", *table(check_head, check_rows),
              "", f"## {t('report_problems', lang)}", ""]
    found = problems(result, lang)
    lines += [f"- {p}" for p in found] if found else [f"- {t('report_none', lang)}"]
    lines += ["", f"## {t('report_personal', lang)}", "", t("report_personal_text", lang)]
    return "\n".join(lines) + "\n"


def html_page(result: dict[str, Any], lang: str | None = None, *, zone: tzinfo | None = None) -> str:
    lang = lang or messages.language()
    tz = zone or localtime.zone()
    dev_rows, check_rows = _rows(result, lang, tz)
    dev_head, check_head = _headers(lang)
    esc = html.escape

    def table(head: list[str], rows: list[list[str]]) -> str:
        return ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
                + "</table>")

    title = t("report_heading", lang, title=t("report_title", lang), home=result["home_id"])
    items = "".join(f"<li>{t('report_item', lang, name=f'<b>{esc(n)}</b>', value=esc(v))}</li>" if n
                    else f"<li>{esc(v)}</li>" for n, v in _header_lines(result, lang, tz))
    found = problems(result, lang) or [t("report_none", lang)]
    return (f"<!doctype html><html lang=\"{'zh-CN' if lang == 'zh' else 'en'}\"><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}"
            f"td,th{{border:1px solid #999;padding:2px 6px}}</style><h1>{esc(title)}</h1><ul>{items}</ul>"
            f"<h2>{esc(t('report_devices', lang))}</h2>{table(dev_head, dev_rows)}"
            f"<h2>{esc(t('report_checks', lang))}</h2>{table(check_head, check_rows)}"
            f"<h2>{esc(t('report_problems', lang))}</h2><ul>"
            + "".join(f"<li>{esc(p)}</li>" for p in found) + "</ul>"
            f"<h2>{esc(t('report_personal', lang))}</h2><p>{esc(t('report_personal_text', lang))}</p></html>\n")


def write(result: dict[str, Any], folder: Path, lang: str | None = None, *,
          zone: tzinfo | None = None) -> tuple[Path, Path]:
    """Write <folder>/install-report-<home>-<local time>.md and .json; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tz = zone or localtime.zone()
    stamp = localtime.parse(result["finished_at"]).astimezone(tz).strftime("%Y%m%d-%H%M%S")
    base = folder / f"install-report-{result['home_id']}-{stamp}"
    md, js = base.with_suffix(".md"), base.with_suffix(".json")
    js.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md.write_text(markdown(result, lang, zone=tz), encoding="utf-8")
    return md, js
