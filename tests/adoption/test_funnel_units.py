"""The funnel counts one unit, passes, at every step; each rate names its base (issue 18,
item 10: it used to say `known 306, issued 307, rate 1.0033`)."""

from __future__ import annotations

from worker.adoption.metrics import Filters, adoption_report
from worker.db import Database
from worker.sync.models import PassMapping, PassStatus


def mapping(customer: str, key: str, pass_id: str | None) -> PassMapping:
    return PassMapping(
        provider="passcreator",
        customer_id=customer,
        pass_key=key,
        user_provided_id=f"passsync-{key}-{customer}",
        provider_pass_id=pass_id,
        template_id=f"tpl-{key}",
        status=PassStatus.ACTIVE,
    )


def test_known_and_issued_count_passes_so_issued_never_exceeds_known(db: Database) -> None:
    # Given one customer with two passes, and a pass whose create has not succeeded yet
    with db.session() as session:
        session.add_all(
            [
                mapping("cus_1", "loyalty", "P1"),
                mapping("cus_1", "welcome", "P2"),
                mapping("cus_2", "loyalty", None),
            ]
        )
    # When the funnel is computed
    with db.session() as session:
        report = adoption_report(session, "passcreator", Filters())
    steps = {s["step"]: s for s in report["steps"]}
    # Then both steps count passes: 3 known, 2 issued (not 2 customers and 2 passes)
    assert report["unit"] == "passes"
    assert (steps["known"]["count"], steps["issued"]["count"]) == (3, 2)
    assert (steps["issued"]["rate"], steps["issued"]["rate_of"]) == (0.6667, "known")
    assert [(s["step"], s["rate_of"]) for s in report["steps"]] == [
        ("known", None),
        ("issued", "known"),
        ("downloaded", "issued"),
        ("installed", "downloaded"),
        ("used", "issued"),
        ("removed", "downloaded"),
    ]
    # And a filter narrows known and issued alike
    with db.session() as session:
        loyalty = adoption_report(session, "passcreator", Filters(pass_key="loyalty"))
    assert [s["count"] for s in loyalty["steps"][:2]] == [2, 1]
