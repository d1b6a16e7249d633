from pathlib import Path

from lepton_cli.main import main as lepton
from shared.protocol import protocol_doc, schemas
from shared.protocol.topics import DEFAULT_ROOT, TOPIC_SPECS

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def test_protocol_doc_is_generated_from_the_code():
    assert DOC.read_text() == protocol_doc.render(), "run: python -m shared.protocol.protocol_doc > docs/PROTOCOL.md"


def test_doc_names_every_topic_and_schema_field():
    text = DOC.read_text()
    for spec in TOPIC_SPECS:
        assert f"`{DEFAULT_ROOT}/{spec.pattern}`" in text
    for name, model in schemas.SCHEMAS.items():
        assert f"### {name}" in text
        for field in model.model_json_schema(by_alias=True)["properties"]:
            assert f"| `{field}` |" in text


def test_check_mode_detects_drift(tmp_path):
    stale = tmp_path / "P.md"
    stale.write_text(DOC.read_text().replace("| 1 | yes |", "| 0 | no |", 1))
    assert lepton(["protocol-doc", "--check", str(stale)]) == 1
    assert lepton(["protocol-doc", "--check", str(DOC)]) == 0
