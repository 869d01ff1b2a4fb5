"""The command line against golden JSON and its promises on bad input.

The golden file pins ``diffcodec nll`` on two CIFAR-10 test images with a seeded random
``micro`` network; regenerate it with ``python tests/test_cli.py --regenerate`` only when a
change of the bound's numbers is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from diffcodec.cli import main
from diffcodec.variances import TABLE_FILE, ErrorTable

from helpers import CIFAR, assert_one_line_error, make_micro_checkpoint, needs_cifar, run

GOLDEN = Path(__file__).parent / "golden" / "nll_micro_2images.json"


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    return make_micro_checkpoint(tmp_path_factory.mktemp("micro"))


def nll_doc(micro: Path, out: Path) -> dict:
    result = run("nll", CIFAR, "--model", micro, "--limit", 2, "--batch-size", 2, "--json", out)
    assert result.exit_code == 0, result.output
    assert "fixedlarge" in result.output and "paper, CIFAR-10 test" in result.output
    return json.loads(out.read_text())


@needs_cifar
def test_nll_matches_golden_and_is_consistent(micro, tmp_path):
    doc = nll_doc(micro, tmp_path / "nll.json")
    golden = json.loads(GOLDEN.read_text())
    for key in ("rate_bits_per_dim", "distortion_bits_per_dim", "total_bits_per_dim", "rmse_0_255",
                "prior_bits_per_dim"):
        assert doc[key] == pytest.approx(golden[key], rel=1e-5), key
    for v in ("fixedlarge", "fixedsmall"):
        np.testing.assert_allclose(doc["by_variance"][v]["step_bits_per_dim"],
                                   golden["by_variance"][v]["step_bits_per_dim"], rtol=1e-5, atol=1e-9)
    assert doc["images"] == 2 and doc["dims"] == 3072 and doc["data_split"] == "test"
    # Internal consistency of the report.
    large = doc["by_variance"]["fixedlarge"]
    assert doc["total_bits_per_dim"] == pytest.approx(doc["rate_bits_per_dim"] + doc["distortion_bits_per_dim"])
    steps = np.array(large["step_bits_per_dim"])
    assert len(steps) == 1000 and len(doc["rmse_0_255_by_t"]) == 1000
    assert doc["rate_bits_per_dim"] == pytest.approx(doc["prior_bits_per_dim"] + steps[1:].sum(), rel=1e-12)
    assert doc["distortion_bits_per_dim"] == pytest.approx(steps[0], rel=1e-12)
    cumulative = np.array(large["cumulative_rate_bits_per_dim"])
    assert cumulative[0] == pytest.approx(doc["prior_bits_per_dim"])
    assert cumulative[-1] == pytest.approx(doc["rate_bits_per_dim"], rel=1e-12)
    assert np.all(np.diff(cumulative) >= 0)
    # Both reverse variances share the decoder at t = 1 (variance β̃_2), hence L_0.
    assert doc["by_variance"]["fixedsmall"]["distortion_bits_per_dim"] == pytest.approx(doc["distortion_bits_per_dim"])


@needs_cifar
def test_nll_refuses_to_overwrite_json(micro, tmp_path):
    out = tmp_path / "nll.json"
    out.write_text("keep me")
    assert_one_line_error(run("nll", CIFAR, "--model", micro, "--limit", 1, "--json", out), "--force")
    assert out.read_text() == "keep me"


def test_nll_bad_inputs(micro, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a PNG")
    assert_one_line_error(run("nll", not_image, "--model", micro), "notes.png")
    assert_one_line_error(run("nll", tmp_path / "missing", "--model", micro), "missing")
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    assert_one_line_error(run("nll", img, "--model", tmp_path / "no-model"), "no-model")
    odd = tmp_path / "odd.png"
    Image.fromarray(np.zeros((33, 30, 3), np.uint8)).save(odd)
    assert_one_line_error(run("nll", odd, "--model", micro), "divisible")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "notes.png", "odd.png"]


def test_nll_rejects_checkpoint_of_another_configuration(micro, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for f in micro.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    config = json.loads((other / "config.json").read_text())
    config["unet"]["base_channels"] = 32
    (other / "config.json").write_text(json.dumps(config))
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    assert_one_line_error(run("nll", img, "--model", other), "do not fit")


def test_sample_writes_grid_and_refuses_overwrite(micro, tmp_path):
    out = tmp_path / "grid.png"
    result = run("sample", "--model", micro, "-n", 4, "--steps", 5, "-o", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.size == (2 * 32 + 2, 2 * 32 + 2) and im.mode == "RGB"
    before = out.read_bytes()
    assert_one_line_error(run("sample", "--model", micro, "-n", 4, "--steps", 5, "-o", out), "--force")
    assert out.read_bytes() == before
    assert_one_line_error(run("sample", "--model", micro, "--steps", 5000, "-o", tmp_path / "b.png"), "exceeds")
    assert not (tmp_path / "b.png").exists()


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "diffcodec.cli", "nll", str(tmp_path / "nothing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_has_examples():
    for command in ("nll", "sample", "train", "convert"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.output, command


if __name__ == "__main__" and "--regenerate" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        doc = nll_doc(make_micro_checkpoint(Path(d) / "micro"), Path(d) / "nll.json")
    keep = {k: doc[k] for k in ("rate_bits_per_dim", "distortion_bits_per_dim", "total_bits_per_dim", "rmse_0_255",
                                "prior_bits_per_dim", "images", "dims")}
    keep["by_variance"] = {v: {"step_bits_per_dim": doc["by_variance"][v]["step_bits_per_dim"]}
                           for v in ("fixedlarge", "fixedsmall")}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(keep, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


@needs_cifar
@pytest.mark.parametrize("option", [["--min-scale", "0"], ["--crop-size", "15"], ["--batch-size", "0"],
                                    ["--lr", "-1"], ["--device", "bogus"], ["--steps", "0"], ["--ema", "1.5"]])
def test_train_rejects_bad_options_without_traceback(tmp_path, option):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", "micro", "--cifar", str(CIFAR), "-o", str(out), *option])
    assert result.exit_code in (1, 2), result.output  # 1: our error line, 2: click's usage error
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and ("error:" in result.output or "Error:" in result.output)
    assert not out.exists()


@needs_cifar
def test_variances_writes_a_table_that_nll_then_uses(tmp_path):
    """`diffcodec variances` estimates the error table beside the weights; `nll` then adds the
    bound under the optimal variances, below both fixed ones' rate, with the table's hash."""
    model = make_micro_checkpoint(tmp_path / "micro")
    result = run("variances", "--model", model, "--cifar", CIFAR, "--images", 4,
                 "--batch-size", 4)
    assert result.exit_code == 0, result.output
    table = ErrorTable.load(model / TABLE_FILE)
    assert table.meta["images"] == 4 and table.meta["model_sha256"] == json.loads((model / "config.json").read_text())[
        "weights_sha256"]
    assert_one_line_error(run("variances", "--model", model, "--cifar", CIFAR, "--images", 4), "--force")
    doc = nll_doc(model, tmp_path / "nll.json")
    opt, large = doc["by_variance"]["optimal"], doc["by_variance"]["fixedlarge"]
    assert opt["rate_bits_per_dim"] < large["rate_bits_per_dim"]
    assert doc["optimal_table"]["sha256"] == table.sha256
    assert "optimal-1se" not in doc["by_variance"]
    for key in ("total_bits_per_dim_at_minus_1se", "total_bits_per_dim_at_plus_1se"):
        assert abs(doc["optimal_table"][key] - opt["total_bits_per_dim"]) < 0.05


@needs_cifar
def test_nll_optimal_needs_a_table(micro):
    assert_one_line_error(run("nll", CIFAR, "--model", micro, "--limit", 1, "--variance", "optimal"), "error table")


def test_variances_refuses_bad_input(micro, tmp_path):
    assert_one_line_error(run("variances", "--model", micro), "no training data")
    assert_one_line_error(run("variances", "--model", micro, "--cifar", tmp_path), "CIFAR")
