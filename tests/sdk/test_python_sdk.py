"""The Python SDK: every conformance case decided as the server decided it, signatures enforced, and
the shipped modules light (no scikit-learn, scipy, numpy, Redis or web framework)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from vary_sdk import BundleError, SignatureError, VaryClient, exposures_payload

from api.bundle_signing import BundleSigner
from personalization.decision.bundle import local_exposure_id
from tests.conformance.generate_decisions import CONFORMANCE_FILE, decode_conformance

ROOT = Path(__file__).resolve().parents[2]
SDK_DIR = ROOT / "sdk" / "python"


@pytest.fixture(scope="module")
def conformance() -> tuple[dict[str, bytes], object]:
    raw = CONFORMANCE_FILE.read_bytes()
    bundles = {name: msgspec.json.encode(b) for name, b in msgspec.json.decode(raw)["bundles"].items()}
    return bundles, decode_conformance(raw)


def test_every_conformance_case_is_decided_as_the_server_decided_it(conformance) -> None:
    bundles, data = conformance
    clients = {name: VaryClient(body) for name, body in bundles.items()}
    decisions = 0
    for n, case in enumerate(data.cases):
        answer = clients[case.bundle].decide(case.visitor, case.entry_ids, case.profile, now=case.now)
        expected = case.expected
        where = f"case {n} ({case.bundle}, visitor {case.visitor.id!r})"
        assert answer.segments.keys() == expected.segments.keys(), where
        for name, score in expected.segments.items():
            assert abs(answer.segments[name] - score) <= 1e-9, where
        assert answer.model_version == expected.model_version, where
        got = [
            (e.entry_id, e.experience, e.variant, e.variant_entry_id, e.is_control, e.holdout, e.propensity, e.reason)
            for e in answer.entries
        ]
        want = [
            (d.entry_id, d.experience, d.variant, d.variant_entry_id, d.is_control, d.holdout, d.propensity, d.reason)
            for d in expected.decisions
        ]
        assert got == want, where
        assert [tuple(a) for a in answer.assignments] == [tuple(a) for a in expected.assignments], where
        if expected.global_ is None:
            assert answer.global_holdout is None, where
        else:
            assert answer.global_holdout is not None, where
            assert (answer.global_holdout.variant, answer.global_holdout.holdout, answer.global_holdout.propensity) == (
                expected.global_.variant, expected.global_.holdout, expected.global_.propensity), where
        decisions += len(want)
    # several thousand decisions over the three spaces, every kind of outcome among them
    assert decisions >= 5000
    assert {case.bundle for case in data.cases} == {"demo", "ninetailed", "synthetic"}


def test_each_entry_carries_the_exposure_to_send(conformance) -> None:
    bundles, data = conformance
    client = VaryClient(bundles["demo"])
    case = next(c for c in data.cases if c.bundle == "demo" and c.visitor.consent.personalization)
    answer = client.decide(msgspec.to_builtins(case.visitor), case.entry_ids, msgspec.to_builtins(case.profile),
                           now=case.now)
    payload = json.loads(exposures_payload(answer.entries))
    assert len(payload["decisions"]) == len(case.entry_ids)
    for entry, sent in zip(answer.entries, payload["decisions"], strict=True):
        assert sent["bundle_version"] == client.version and sent["ts"] == case.now
        assert (sent["entry_id"], sent["experience"], sent["variant"], sent["propensity"]) == (
            entry.entry_id, entry.experience, entry.variant, entry.propensity)
        assert entry.decision is not None and entry.exposure_id == local_exposure_id(entry.decision)


def _keypair() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    public = base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    return private, public


def test_a_public_key_makes_the_signature_mandatory(conformance) -> None:
    bundles, _ = conformance
    body = bundles["synthetic"]
    signer = BundleSigner(Ed25519PrivateKey.from_private_bytes(b"\x01" * 32))
    signature = signer.sign(body)
    assert VaryClient(body, signer.public_key_b64, signature).version == json.loads(body)["version"]
    # the raw 32-byte key works as well as its base64
    assert VaryClient(body, base64.b64decode(signer.public_key_b64), signature).version
    tampered = body.replace(b'"holdout":0.2', b'"holdout":0.0')
    assert tampered != body
    with pytest.raises(SignatureError, match="does not match"):
        VaryClient(tampered, signer.public_key_b64, signature)
    _, other = _keypair()
    with pytest.raises(SignatureError, match="does not match"):
        VaryClient(body, other, signature)
    with pytest.raises(SignatureError, match="no signature"):
        VaryClient(body, signer.public_key_b64, None)
    with pytest.raises(SignatureError, match="scheme"):
        VaryClient(body, signer.public_key_b64, "rsa=abc")


def test_an_encrypted_bundle_needs_its_key(conformance) -> None:
    bundles, _ = conformance
    body = bundles["demo"]
    aes = bytes(range(16))
    signer = BundleSigner(Ed25519PrivateKey.from_private_bytes(b"\x02" * 32), aes)
    version = json.loads(body)["version"]
    sealed = signer.seal(body, version, 1)
    assert b"hero" not in sealed
    client = VaryClient(sealed, signer.public_key_b64, signer.sign(sealed),
                        encryption_key=base64.b64encode(aes).decode())
    assert client.version == version and "heroHome" in client.bundle.entries
    with pytest.raises(BundleError, match="encrypted"):
        VaryClient(sealed)
    with pytest.raises(BundleError, match="could not be decrypted"):
        VaryClient(sealed, encryption_key=bytes(16))


def test_bad_bundles_are_refused_with_a_reason() -> None:
    with pytest.raises(BundleError, match="not a Vary bundle"):
        VaryClient(b"<html>")
    with pytest.raises(BundleError, match="format 99"):
        VaryClient(b'{"format": 99, "version": "x"}')
    with pytest.raises(BundleError, match="not a Vary bundle"):
        VaryClient(b'{"format": 1, "version": 3}')


def test_the_built_distribution_decides_alone_and_imports_nothing_heavy(tmp_path: Path, conformance) -> None:
    """``setup.py build`` (what ``pip wheel sdk/python`` runs) ships Vary's decision modules; that
    build directory alone, on a bare ``sys.path``, decides a case exactly and loads no heavy library."""
    source = tmp_path / "sdk"
    shutil.copytree(SDK_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    lib = tmp_path / "lib"
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "build", "--build-base", str(tmp_path / "build"), "--build-lib", str(lib)],
        check=False, cwd=source, env={**os.environ, "VARY_REPO": str(ROOT), "PYTHONWARNINGS": "ignore"},
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    shipped = sorted(str(p.relative_to(lib)) for p in lib.rglob("*.py"))
    assert "personalization/decision/decide.py" in shipped and "vary_sdk/client.py" in shipped
    assert {p.split("/")[0] for p in shipped} == {"personalization", "vary_sdk"}
    assert not {"personalization/service.py", "personalization/store/profiles.py"} & set(shipped)
    assert sorted(p for p in shipped if p.startswith("personalization/") and "/decision/" not in p) == [
        "personalization/__init__.py", "personalization/seams.py", "personalization/types.py"]
    bundles, data = conformance
    (tmp_path / "bundle.json").write_bytes(bundles["synthetic"])
    case = next(c for c in data.cases if c.bundle == "synthetic" and c.expected.model_version
                and any(d.experience == "recs-bandit" for d in c.expected.decisions))
    (tmp_path / "case.json").write_bytes(msgspec.json.encode(case))
    script = f"""
import json, sys
sys.path.insert(0, {str(lib)!r})
import vary_sdk, personalization
case = json.load(open({str(tmp_path / "case.json")!r}))
client = vary_sdk.VaryClient(open({str(tmp_path / "bundle.json")!r}, "rb").read())
answer = client.decide(case["visitor"], case["entry_ids"], case["profile"], now=case["now"])
print(json.dumps({{
    "origin": personalization.__file__,
    "variants": [e.variant for e in answer.entries],
    "propensities": [e.propensity for e in answer.entries],
    "modules": sorted({{name.split(".")[0] for name in sys.modules}}),
}}))
"""
    done = subprocess.run([sys.executable, "-I", "-c", script], check=False, capture_output=True, text=True,
                          timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["origin"].startswith(str(lib))
    assert result["variants"] == [d.variant for d in case.expected.decisions]
    assert result["propensities"] == [d.propensity for d in case.expected.decisions]
    heavy = {"sklearn", "scipy", "numpy", "pandas", "redis", "litestar", "uvicorn", "content", "api", "cryptography"}
    assert heavy.isdisjoint(result["modules"]), heavy & set(result["modules"])
