"""The soak script, briefly: 4 clients for 8 s with every kind of traffic (a 2.6 Mpx RGBA
16-bit PNG for the bomb), then a SIGTERM under load. The full run (16 clients, the 40 Mpx
bomb, minutes) is in docs/hostile_inputs.md."""

from __future__ import annotations

import json

import pytest
from soak import ALLOWED, MIX, main


@pytest.mark.slow
def test_short_soak_answers_every_accepted_call_and_stays_in_budget(tiny_bundle, tmp_path):
    report_path = tmp_path / "soak.json"
    status = main(["--bundle", str(tiny_bundle), "--seconds", "8", "--clients", "4", "--bomb-side", "1600",
                   "--decode-memory-mib", "256", "--grace", "20", "--cache", str(tmp_path), "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    assert status == 0, json.dumps(report, indent=1)[:6000]
    assert set(report["codes_by_kind"]) == set(MIX)  # every kind of traffic was sent
    seen = {code for codes in report["codes_by_kind"].values() for code in codes}
    assert seen <= ALLOWED | {"UNAVAILABLE"}, report["codes_by_kind"]
    malformed = report["codes_by_kind"]["malformed"]
    # UNAVAILABLE: sent after the drain closed the port, as any kind may be.
    assert malformed["INVALID_ARGUMENT"] > 0 and set(malformed) <= {"INVALID_ARGUMENT", "UNAVAILABLE"}, malformed
    assert report["lost_count"] == 0 and report["unexpected_count"] == 0
    assert report["server_exit_code"] == 0 and report["server_unknown_or_internal"] == 0
    assert not report["server_log_errors"]
    assert report["rss"]["under_limit"], report["rss"]
    assert "DEADLINE_EXCEEDED" in report["server_requests_before_sigterm"]["Identify"]
    assert "CANCELLED" in report["server_requests_before_sigterm"]["IdentifyStream"]
