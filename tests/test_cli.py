"""The factlab command line."""

import json
from pathlib import Path

import pytest

from factlab.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_rank_json_on_figure_1(capsys):
    assert main(["rank", str(EXAMPLES / "figure1.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("triples", "subjects", "predicates", "objects", "prop21", "lower", "upper", "certified",
                "effective_upper"):
        assert key in out
    assert (out["triples"], out["subjects"], out["predicates"], out["objects"]) == (8, 5, 3, 4)
    assert (out["prop21"], out["lower"], out["upper"], out["certified"]) == (6, 5, 5, True)
    assert 1 <= out["effective_upper"] <= 5


def test_rank_kernel_option_picks_the_cp_iteration(capsys):
    """Both forms of the search certify Example 2.2's rank 5; the bound names the form."""
    for kernel in ("compiled", "torch"):
        assert main(["rank", str(EXAMPLES / "figure1.csv"), "--json", "--kernel", kernel]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["lower"], out["upper"], out["certified"]) == (5, 5, True)
    with pytest.raises(SystemExit) as exc:
        main(["rank", str(EXAMPLES / "figure1.csv"), "--kernel", "numba"])
    assert exc.value.code == 2


def test_rank_text_output_names_the_bounds(capsys):
    assert main(["rank", str(EXAMPLES / "figure1.nt")]) == 0
    text = capsys.readouterr().out
    assert "Proposition 2.1         6" in text and "[5, 5]  certified" in text


def test_layer_bounds_json(capsys):
    argv = ["layer-bounds", "--d-model", "6", "--n-heads", "2", "--d-head-qk", "2", "--d-head-vo", "4",
            "--predicates", "3", "--json"]
    assert main(argv) == 0
    # 2·2·6·(4+2) = 144; 6 + 2·4·3 = 30; 6 + 2·4 = 14
    assert json.loads(capsys.readouterr().out) == {"params": 144, "prop35": 30, "lower_estimate": 14}


def test_bad_inputs_exit_2_naming_the_fault(tmp_path, capsys):
    assert main(["rank", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    bad = tmp_path / "conflict.csv"
    bad.write_text("subject,predicate,object\na,r,x\na,r,y\n")
    assert main(["rank", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "conflict.csv:2" in err and "conflict.csv:3" in err
    assert main(["rank", str(bad), "--conflicts", "first", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["triples"] == 1
    assert main(["layer-bounds", "--d-model", "2", "--n-heads", "1", "--d-head-qk", "3", "--d-head-vo", "1",
                 "--predicates", "1"]) == 2
    assert "d_head_qk" in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "rank" in out and "layer-bounds" in out


def test_reproduce_list_names_every_paper(capsys):
    from factlab.experiments import registry

    assert main(["reproduce", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(registry.PACKAGES)
    assert main(["reproduce"]) == 2                               # no paper named
    assert "--list" in capsys.readouterr().err


def test_run_a_spec_file_then_summary_and_export_of_its_store(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text('paper = "wong2025"\nname = "tiny"\n[databases]\nn = 4\nmax_facts = 8\nrank_interval = false\n'
                    '[layers]\nmax_d_model = 2\nmax_heads = 1\n[pairing]\nn_pairs = 5\n[training]\nmax_epochs = 5\n')
    assert main(["run", str(spec), "--no-progress"]) == 0
    assert "5 rows" in capsys.readouterr().out
    assert main(["summary", str(tmp_path / "tiny"), "--export", str(tmp_path / "x"), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "wong2025" in out and "pairs trained / planned  5 / 5" in out
    assert (tmp_path / "x" / "results.csv").exists() and (tmp_path / "x" / "units.csv").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('paper = "nonesuch"\n')
    assert main(["run", str(bad)]) == 2
    assert "nonesuch" in capsys.readouterr().err
