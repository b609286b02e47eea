"""Erasure requests: validation with clear messages, normalisation, digest and id (pure, no Spark)."""

from __future__ import annotations

import pytest

from jobs.erasure.request import ErasureRequestError, build_request


def _req(kind: str, values, **kw):  # noqa: ANN001, ANN202
    return build_request(kind, values, mode=kw.pop("mode", "dry_run"), ticket="T-1", requested_by="dpo", **kw)


def test_jurisdiction_defaults_to_uk_and_ids_are_deterministic() -> None:
    a, b = _req("jurisdiction", None), _req("jurisdiction", ["UK"])
    assert a.values == ("uk",) and a.erasure_id == b.erasure_id and a.digest == b.digest
    assert _req("jurisdiction", ["uk"], mode="execute").erasure_id == a.erasure_id  # dry run then execute
    other = build_request("jurisdiction", ["uk"], mode="dry_run", ticket="T-2", requested_by="dpo")
    assert other.erasure_id != a.erasure_id  # another order, another erasure


def test_domains_and_hashes_are_normalised() -> None:
    assert _req("source_domain", ["WWW.Example.CO.UK."]).values == ("www.example.co.uk",)
    h = "AB" * 32
    assert _req("image_hashes", f"{h}, {h.lower()}").values == (h.lower(),)


@pytest.mark.parametrize(
    ("kind", "values", "kw", "message"),
    [
        ("nope", [], {}, "selector kind"),
        ("jurisdiction", ["u k!"], {}, "jurisdiction tag"),
        ("source_domain", ["a.com", "b.com"], {}, "exactly one"),
        ("source_domain", ["not a host"], {}, "not a valid host"),
        ("image_hashes", [], {}, "at least one"),
        ("image_hashes", ["xyz"], {}, "64 hex"),
        ("subject_photo", [], {}, "readable photo"),
        ("jurisdiction", ["uk"], {"expand_faces": "1.5"}, "between 0 and 1"),
        ("jurisdiction", ["uk"], {"mode": "delete-all"}, "mode must be"),
    ],
)
def test_bad_requests_get_a_clear_message(kind: str, values, kw: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ErasureRequestError, match=message):
        _req(kind, values, **kw)


@pytest.mark.parametrize("ticket", ["", "   ", "{{ 7*7 }}", "$(rm -rf /)", "a" * 500, "x\ny"])
def test_ticket_and_requester_refuse_markup_shell_and_oversize(ticket: str) -> None:
    with pytest.raises(ErasureRequestError, match="ticket"):
        build_request("jurisdiction", ["uk"], mode="dry_run", ticket=ticket, requested_by="dpo")


def test_what_is_logged_never_holds_a_subject_selector() -> None:
    photo = _req("subject_photo", [], photo=b"\x89PNG...")
    domain = _req("source_domain", ["private-person.example.com"])
    assert "private" not in domain.describe() and "PNG" not in photo.describe()
    assert photo.selector()["values"] != [] and b"PNG" not in str(photo.selector()).encode()


def test_the_command_refuses_a_bad_request_before_starting_anything(capsys: pytest.CaptureFixture) -> None:
    from jobs.erasure.job import main

    code = main(
        [
            "--lake",
            "/nonexistent",
            "--selector",
            "image_hashes",
            "--value",
            "xyz",
            "--ticket",
            "T",
            "--requested-by",
            "dpo",
        ]
    )
    assert code == 2 and "64 hex" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--selector", "jurisdiction"])  # no ticket, no requester
