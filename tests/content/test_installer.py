"""Installing Vary's content model (content/installer.py) with the real ``contentful_management``
client against a local Management API (tests/content/management_server.py) that records requests."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

import content.installer as installer
from content import demo_space_path
from content.installer import (
    InstallError,
    InstallReport,
    ManagementAPIError,
    UnknownContentTypeError,
    experiences_field,
    install_content_model,
    model_content_types,
    normalize_content_type,
    normalize_field,
)
from api.cli.content import add_cms_parser, cms_command
from tests.content.management_server import DEFAULT_TOKEN, FakeManagement, RecordedRequest, published_ids

ENV = "master"


@pytest.fixture
def cma() -> Iterator[FakeManagement]:
    with FakeManagement(environment=ENV) as server:
        yield server


def _demo_type(content_type_id: str) -> dict[str, Any]:
    export = json.loads(demo_space_path().read_text(encoding="utf-8"))
    return next(ct for ct in export["contentTypes"] if ct["sys"]["id"] == content_type_id)


def _without_experiences(content_type_id: str) -> dict[str, Any]:
    definition = _demo_type(content_type_id)
    definition["fields"] = [f for f in definition["fields"] if f["id"] != "varyExperiences"]
    return definition


def _install(cma: FakeManagement, **kwargs: Any) -> InstallReport:
    return install_content_model(DEFAULT_TOKEN, cma.space_id, ENV, api_url=cma.api_url, https=False, **kwargs)


def _writes(cma: FakeManagement) -> list[tuple[str, str, str | None]]:
    prefix = f"/spaces/{cma.space_id}/environments/{ENV}/content_types/"
    return [(r.method, r.path.removeprefix(prefix), r.headers.get("x-contentful-version")) for r in cma.writes]


def _stored_equals_model(cma: FakeManagement, content_type_id: str) -> bool:
    return normalize_content_type(cma.content_types[content_type_id]) == normalize_content_type(
        model_content_types()[content_type_id]
    )


# --- first and second run ----------------------------------------------------------------------------


def test_first_run_creates_and_publishes_every_vary_type(cma: FakeManagement) -> None:
    report = _install(cma)
    assert report.created == ("varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey") and report.changed
    assert _writes(cma) == [
        ("PUT", "varyAudience", None),  # create: PUT with the id, no version
        ("PUT", "varyAudience/published", "1"),
        ("PUT", "varyExperience", None),
        ("PUT", "varyExperience/published", "1"),
        ("PUT", "varyJourney", None),
        ("PUT", "varyJourney/published", "1"),
        ("PUT", "varySettings", None),
        ("PUT", "varySettings/published", "1"),
        ("PUT", "varySurvey", None),
        ("PUT", "varySurvey/published", "1"),
    ]
    assert set(published_ids(cma)) == {"varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey"}
    assert all(_stored_equals_model(cma, name) for name in ("varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey"))
    experience = cma.content_types["varyExperience"]
    audience_field = next(f for f in experience["fields"] if f["id"] == "audience")
    assert audience_field["validations"] == [{"linkContentType": ["varyAudience"]}]
    assert all(r.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}" for r in cma.requests)
    assert "app vary" in cma.requests[0].headers["x-contentful-user-agent"]


def test_second_run_writes_nothing(cma: FakeManagement) -> None:
    _install(cma)
    cma.clear_requests()
    report = _install(cma)
    assert cma.writes == []
    assert [r.method for r in cma.requests] == ["GET"]  # one listing is all it takes
    assert report.unchanged == ("varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey") and not report.changed


def test_a_validation_changed_in_the_space_is_put_back(cma: FakeManagement) -> None:
    _install(cma)

    def widen(definition: dict[str, Any]) -> None:
        field = next(f for f in definition["fields"] if f["id"] == "trafficAllocation")
        field["validations"] = [{"range": {"min": 0, "max": 2}}]

    cma.edit("varyExperience", widen)
    version = cma.content_types["varyExperience"]["sys"]["version"]
    cma.clear_requests()
    report = _install(cma)
    assert report.updated == ("varyExperience",) and report.unchanged == ("varyAudience", "varyJourney", "varySettings", "varySurvey")
    assert report.results[1].changes == ("field trafficAllocation: validations differ",)
    assert _writes(cma) == [
        ("PUT", "varyExperience", str(version)),  # save(): the current version, or Contentful says 409
        ("PUT", "varyExperience/published", str(version + 1)),
    ]
    assert _stored_equals_model(cma, "varyExperience")
    assert "varyExperience" in set(published_ids(cma))
    cma.clear_requests()
    _install(cma)
    assert cma.writes == []


def test_name_display_field_and_order_count_but_fields_someone_added_stay(cma: FakeManagement) -> None:
    _install(cma)

    def rework(definition: dict[str, Any]) -> None:
        definition["displayField"] = "key"
        definition["fields"].reverse()
        definition["fields"].insert(2, {"id": "notes", "name": "Notes", "type": "Text"})

    cma.edit("varyAudience", rework)
    cma.clear_requests()
    report = _install(cma)
    assert report.results[0].action == "updated"
    assert "displayField: 'key' -> 'name'" in report.results[0].changes
    stored = cma.content_types["varyAudience"]
    model_ids = [f["id"] for f in model_content_types()["varyAudience"]["fields"]]
    assert [f["id"] for f in stored["fields"]] == [*model_ids, "notes"]
    assert stored["displayField"] == "name"
    cma.clear_requests()
    assert _install(cma).unchanged == ("varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey") and cma.writes == []


def test_a_space_from_before_guardrails_gets_the_field_and_the_settings_type(cma: FakeManagement) -> None:
    """Issue #18: ``guardrails`` on varyExperience, and varySettings (goals, globalHoldout) — created when
    missing, brought up to date (fields someone added kept) when an editor made it by hand."""
    for content_type_id in ("varyAudience", "varyJourney"):
        cma.seed({"sys": {"id": content_type_id}, **model_content_types()[content_type_id]})
    experience = model_content_types()["varyExperience"]
    experience["fields"] = [f for f in experience["fields"] if f["id"] != "guardrails"]
    cma.seed({"sys": {"id": "varyExperience"}, **experience})
    report = _install(cma)
    assert report.created == ("varySettings", "varySurvey") and report.updated == ("varyExperience",)
    assert report.results[1].changes == ("field guardrails: missing",)
    assert _stored_equals_model(cma, "varyExperience") and _stored_equals_model(cma, "varySettings")
    settings = {f["id"]: f for f in cma.content_types["varySettings"]["fields"]}
    assert settings["globalHoldout"]["type"] == "Number"
    assert settings["globalHoldout"]["validations"] == [{"range": {"min": 0, "max": 0.5}}]
    assert settings["goals"]["items"]["type"] == "Symbol"
    guardrails = next(f for f in cma.content_types["varyExperience"]["fields"] if f["id"] == "guardrails")
    assert guardrails["type"] == "Object" and not guardrails.get("required")
    assert {"varyExperience", "varySettings"} <= set(published_ids(cma))


def test_a_hand_made_settings_type_gets_the_global_holdout_and_keeps_its_own_fields(cma: FakeManagement) -> None:
    cma.seed({"sys": {"id": "varySettings"}, "name": "Vary settings", "displayField": "name", "fields": [
        {"id": "name", "name": "Name", "type": "Symbol", "required": True},
        {"id": "notes", "name": "Notes", "type": "Text"},
        {"id": "goals", "name": "Goals", "type": "Array", "items": {"type": "Symbol"}},
    ]})
    report = _install(cma)
    settings = next(r for r in report.results if r.content_type == "varySettings")
    assert settings.action == "updated" and "field globalHoldout: missing" in settings.changes
    assert [f["id"] for f in cma.content_types["varySettings"]["fields"]] == ["name", "goals", "globalHoldout", "notes"]
    cma.clear_requests()
    _install(cma)
    assert cma.writes == []


def test_an_unpublished_but_equal_type_is_only_published(cma: FakeManagement) -> None:
    cma.seed({"sys": {"id": "varyAudience"}, **model_content_types()["varyAudience"]}, published=False)
    report = _install(cma)
    assert report.results[0].action == "published"
    assert _writes(cma)[:1] == [("PUT", "varyAudience/published", "1")]
    assert "varyAudience" in set(published_ids(cma))


# --- add_to ------------------------------------------------------------------------------------------


def test_add_to_adds_the_field_once_and_keeps_the_rest(cma: FakeManagement) -> None:
    hero = _without_experiences("hero")
    hero["fields"][0]["defaultValue"] = {"en-US": "Welcome"}  # SDK field objects would keep this one…
    hero["fields"][1]["futureProperty"] = {"kept": True}  # …but drop a property they do not know
    cma.seed(hero)
    before = copy.deepcopy(cma.content_types["hero"]["fields"])
    version = cma.content_types["hero"]["sys"]["version"]
    cma.clear_requests()

    report = _install(cma, add_to=["hero"])
    assert report.results[-1].content_type == "hero" and report.results[-1].action == "field_added"
    assert _writes(cma)[-2:] == [("PUT", "hero", str(version)), ("PUT", "hero/published", str(version + 1))]
    fields = cma.content_types["hero"]["fields"]
    assert fields[:-1] == before
    assert normalize_field(fields[-1]) == normalize_field(experiences_field())
    assert "hero" in set(published_ids(cma))

    cma.clear_requests()
    again = _install(cma, add_to=["hero", " hero "])
    assert cma.writes == [] and again.unchanged == ("varyAudience", "varyExperience", "varyJourney", "varySettings", "varySurvey", "hero")
    assert [f["id"] for f in cma.content_types["hero"]["fields"]].count("varyExperiences") == 1


def test_add_to_a_type_with_someone_elses_draft_saves_without_publishing(cma: FakeManagement) -> None:
    cma.seed(_without_experiences("banner"))
    cma.edit("banner", lambda d: d.update(name="Banner (draft)"), publish=False)
    report = _install(cma, add_to=["banner"])
    assert report.results[-1].action == "field_saved"
    assert "publish it in Contentful" in (report.results[-1].note or "")
    assert [w for w in _writes(cma) if w[1].startswith("banner")] == [("PUT", "banner", "3")]
    assert "banner" not in set(published_ids(cma))


def test_an_existing_but_different_field_is_left_alone_with_a_note(cma: FakeManagement) -> None:
    banner = _without_experiences("banner")
    banner["fields"].append({"id": "varyExperiences", "name": "Experiences", "type": "Array",
                             "items": {"type": "Link", "linkType": "Entry"}})
    cma.seed(banner)
    report = _install(cma, add_to=["banner"])
    assert report.results[-1].action == "unchanged" and "differs" in (report.results[-1].note or "")
    assert not [w for w in _writes(cma) if w[1].startswith("banner")]


def test_an_unknown_content_type_is_a_clear_error_and_nothing_is_written(cma: FakeManagement) -> None:
    cma.seed(_without_experiences("hero"))
    cma.seed(_without_experiences("banner"))
    with pytest.raises(UnknownContentTypeError) as caught:
        _install(cma, add_to=["hero", "heroo"])
    assert str(caught.value) == "content type 'heroo' does not exist in this environment; it has: banner, hero"
    assert caught.value.available == ("banner", "hero")
    assert cma.writes == []


def test_vary_types_cannot_get_the_field(cma: FakeManagement) -> None:
    with pytest.raises(InstallError, match="varyExperience is Vary's own content type"):
        _install(cma, add_to=["varyExperience"])
    assert cma.requests == []


def test_a_full_content_type_is_refused(cma: FakeManagement) -> None:
    crowded = {"sys": {"id": "page"}, "name": "Page", "displayField": "f0",
               "fields": [{"id": f"f{i}", "name": f"F{i}", "type": "Symbol"} for i in range(50)]}
    cma.seed(crowded)
    with pytest.raises(InstallError, match="page already has 50 fields"):
        _install(cma, add_to=["page"])


# --- failures ----------------------------------------------------------------------------------------


def test_a_concurrent_edit_is_a_version_conflict(cma: FakeManagement) -> None:
    _install(cma)
    cma.edit("varyExperience", lambda d: d.update(name="Experiment"))
    edited = False

    def meanwhile(request: RecordedRequest) -> None:
        nonlocal edited
        if request.method == "PUT" and not edited:
            edited = True
            cma.edit("varyExperience", lambda d: d.update(name="Experiment 2"))

    cma.on_request = meanwhile
    with pytest.raises(ManagementAPIError, match="run the install again") as caught:
        _install(cma)
    assert caught.value.status == 409


def test_a_refused_token(cma: FakeManagement) -> None:
    with pytest.raises(ManagementAPIError, match="token was refused") as caught:
        install_content_model("wrong", cma.space_id, ENV, api_url=cma.api_url, https=False)
    assert caught.value.status == 401


def test_an_unknown_environment(cma: FakeManagement) -> None:
    with pytest.raises(ManagementAPIError, match="environment does not exist") as caught:
        _install_env(cma, "staging")
    assert caught.value.status == 404 and "environment staging" in str(caught.value)


def _install_env(cma: FakeManagement, environment: str) -> InstallReport:
    return install_content_model(DEFAULT_TOKEN, cma.space_id, environment, api_url=cma.api_url, https=False)


def test_an_unreachable_server() -> None:
    with FakeManagement() as gone:
        url = gone.api_url
    with pytest.raises(ManagementAPIError, match="cannot reach Contentful") as caught:
        install_content_model(DEFAULT_TOKEN, "space0001", ENV, api_url=url, https=False)
    assert caught.value.status is None


def test_dry_run_writes_nothing(cma: FakeManagement) -> None:
    cma.seed(_without_experiences("hero"))
    report = _install(cma, add_to=["hero"], dry_run=True)
    assert cma.writes == [] and report.dry_run
    assert [r.action for r in report.results] == ["created", "created", "created", "created", "created", "field_added"]
    assert report.render().startswith("Dry run: nothing was written.")
    assert "would create and publish" in report.render()


# --- the model itself --------------------------------------------------------------------------------


def test_the_model_matches_the_demo_space() -> None:
    for content_type_id, definition in model_content_types().items():
        assert normalize_content_type(definition) == normalize_content_type(_demo_type(content_type_id))
    for personalized in ("hero", "banner"):
        demo_field = next(f for f in _demo_type(personalized)["fields"] if f["id"] == "varyExperiences")
        assert normalize_field(demo_field) == normalize_field(experiences_field())


def test_the_model_has_the_validations_vary_relies_on() -> None:
    experience = {f["id"]: f for f in model_content_types()["varyExperience"]["fields"]}
    audience = {f["id"]: f for f in model_content_types()["varyAudience"]["fields"]}
    assert experience["audience"]["validations"] == [{"linkContentType": ["varyAudience"]}]
    assert experience["type"]["validations"] == [{"in": ["personalization", "ab_test", "bandit"]}]
    for share in (experience["trafficAllocation"], experience["holdout"], audience["minScore"]):
        assert share["validations"] == [{"range": {"min": 0, "max": 1}}]
    settings = {f["id"]: f for f in model_content_types()["varySettings"]["fields"]}
    assert settings["globalHoldout"]["validations"] == [{"range": {"min": 0, "max": 0.5}}]
    assert experience["variants"]["validations"] == [{"size": {"min": 1, "max": 10}}]
    assert experiences_field()["items"]["validations"] == [{"linkContentType": ["varyExperience"]}]


def test_normalization_treats_defaults_nulls_and_validation_order_as_contentful_does() -> None:
    bare = {"id": "k", "name": "K", "type": "Symbol",
            "validations": [{"unique": True}, {"regexp": {"pattern": "^a$"}}]}
    full = {"id": "k", "name": "K", "type": "Symbol", "localized": False, "required": False,
            "disabled": False, "omitted": False, "deleted": False,
            "validations": [{"regexp": {"pattern": "^a$", "flags": None}}, {"unique": True}]}
    assert normalize_field(bare) == normalize_field(full)
    assert normalize_field({**bare, "required": True}) != normalize_field(full)
    items_bare = {"id": "g", "name": "G", "type": "Array", "items": {"type": "Symbol"}}
    items_full = {**items_bare, "items": {"type": "Symbol", "validations": []}}
    assert normalize_field(items_bare) == normalize_field(items_full)


def test_model_files_are_package_data() -> None:
    assert {p.name for p in installer.MODEL_DIR.glob("*.json")} == {
        "varyAudience.json", "varyExperience.json", "varyExperiencesField.json", "varyJourney.json",
        "varySettings.json", "varySurvey.json",
    }


# --- the command line --------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vary")
    add_cms_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _cli(cma: FakeManagement, *extra: str) -> list[str]:
    return ["cms", "install", "--space", cma.space_id, "--environment", ENV, "--management-token",
            DEFAULT_TOKEN, "--api-url", cma.api_url, "--insecure-http", *extra]


def test_cli_installs_and_prints_a_report(cma: FakeManagement, capsys: pytest.CaptureFixture[str]) -> None:
    cma.seed(_without_experiences("hero"))
    cma.seed(_without_experiences("banner"))
    args = _parse(_cli(cma, "--add-to", "hero, banner"))
    assert args.command == "cms" and cms_command(args) == 0
    out = capsys.readouterr().out
    assert f"space {cma.space_id}, environment {ENV}" in out
    assert "varyAudience    created and published" in out
    assert "banner          varyExperiences field added and published" in out
    assert cms_command(_parse(_cli(cma, "--add-to", "hero", "--add-to", "banner"))) == 0
    assert capsys.readouterr().out.count("unchanged") == 7


def test_cli_reports_errors_on_stderr(cma: FakeManagement, capsys: pytest.CaptureFixture[str]) -> None:
    assert cms_command(_parse(_cli(cma, "--add-to", "nope"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("vary cms install: content type 'nope' does not exist")


def test_cli_reads_the_token_from_stdin(cma: FakeManagement, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    argv = _cli(cma)
    argv[argv.index(DEFAULT_TOKEN)] = "-"
    monkeypatch.setattr("sys.stdin", io.StringIO(DEFAULT_TOKEN + "\n"))
    assert cms_command(_parse(argv)) == 0
    assert "created and published" in capsys.readouterr().out


def test_exported_surface() -> None:
    assert set(installer.__all__) == {
        "EXPERIENCES_FIELD_ID", "VARY_CONTENT_TYPES", "ContentTypeResult", "InstallError", "InstallReport",
        "ManagementAPIError", "UnknownContentTypeError", "experiences_field", "install_content_model",
        "model_content_types", "normalize_content_type", "normalize_field",
    }
    assert all(hasattr(installer, name) for name in installer.__all__)
