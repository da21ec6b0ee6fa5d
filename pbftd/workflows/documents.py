"""Documents the engine generates: the enforcement application (申请执行书)
and the effectiveness certificate (生效证明).

Each is UTF-8 text built only from on-chain case data and the generating
transaction's height, id and block date, so every node produces the same
bytes and the same SHA-256, and any node can regenerate the file later (to
hand it to the e-litigation platform for signing, or to prove it).  Parties
appear only as their pseudonymous refs; the court system that knows who a
ref stands for renders names for humans off chain.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["application_document", "certificate_document", "sha256_hex", "yuan"]

_KIND_ZH = {"mediation": "民事调解书", "judgment": "民事判决书"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def yuan(fen: int) -> str:
    """12345 fen -> '123.45'."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def application_document(case: dict[str, Any], creditor_ref: str, made: dict[str, Any]) -> bytes:
    """申请执行书 for ``creditor_ref``'s obligations in ``case``; ``made`` is
    ``{"height", "tx_id", "date"}`` of the non-performance confirmation."""
    owed = [o for o in case["obligations"] if o["creditor_ref"] == creditor_ref]
    debtors = sorted({o["debtor_ref"] for o in owed})
    lines = [
        "申请执行书",
        "",
        f"申请执行人(当事人标识): {creditor_ref}",
        *[f"被执行人(当事人标识): {d}" for d in debtors],
        "",
        f"执行依据: {case['court']} {case['case_no']} {_KIND_ZH[case['kind']]}",
        f"执行依据文书 SHA-256: {case['document_sha256']}",
        f"生效日期: {case['effective_date']}",
        f"履行期限届满日: {case['performance_deadline']}",
        "",
        "申请执行事项:",
    ]
    total = 0
    for i, o in enumerate(owed, 1):
        total += o["amount_fen"]
        lines.append(f"{i}. 被执行人 {o['debtor_ref']} 应向申请执行人给付人民币 "
                     f"{yuan(o['amount_fen'])} 元 ({o['description']})")
    lines += [
        f"合计: 人民币 {yuan(total)} 元",
        "",
        "事实与理由: 上述法律文书已发生法律效力, 被执行人未在履行期限内履行义务, "
        "申请执行人经身份核验确认未履行, 特申请强制执行。",
        "",
        f"确认未履行: 区块高度 {made['height']}, 交易 {made['tx_id']}",
        f"生成日期: {made['date']}",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def certificate_document(case: dict[str, Any], made: dict[str, Any]) -> bytes:
    """生效证明 for a judgment; ``made`` as for :func:`application_document`."""
    lines = [
        "生效证明",
        "",
        f"案号: {case['case_no']}",
        f"法院: {case['court']}",
        f"文书: {_KIND_ZH[case['kind']]}, SHA-256 {case['document_sha256']}",
        f"该判决已于 {case['effective_date']} 发生法律效力。",
        "",
        f"出具: 区块高度 {made['height']}, 交易 {made['tx_id']}",
        f"出具日期: {made['date']}",
        "",
    ]
    return "\n".join(lines).encode("utf-8")
