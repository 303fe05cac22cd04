"""protos/generated/ must be exactly what scripts/gen-protos makes from protos/*.proto."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen-protos"), str(tmp_path)], check=True)
    generated = ROOT / "protos" / "generated"
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == ["greeter_pb2.py", "greeter_pb2.pyi"]
    for name in fresh:
        assert (generated / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"protos/generated/{name} is stale: run scripts/gen-protos"
        )
