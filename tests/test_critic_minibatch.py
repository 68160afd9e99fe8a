"""Smoke test of benchmark/critic_minibatch.py: a tiny real run writes its CSV and markdown table.
Timings are never asserted (the machine is shared); only that every column is there and finite."""
import csv
import math

from conftest import ROOT, load_script

CRITIC_MINIBATCH = ROOT / "benchmark" / "critic_minibatch.py"


def test_a_tiny_run_writes_every_column_of_the_csv_and_the_markdown_table(tmp_path, capsys):
    module = load_script(CRITIC_MINIBATCH)
    args = module.Args(env_ids=["SafetyHopperVelocity-v1"], steps=400, minibatch_sizes=[64], critic_epochs=1, seeds=1,
                       extra_settings=["128x2@0.003"],
                       out=str(tmp_path / "cm"))
    csv_path, md_path = module.main(args)
    assert (csv_path, md_path) == (tmp_path / "cm.csv", tmp_path / "cm.md")
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["setting"] for r in rows] == ["64", "128x2@0.003"]
    row, extra = rows
    assert (extra["minibatch_size"], extra["critic_epochs"], extra["critic_lr"]) == ("128", "2", "0.003")
    assert extra["grad_steps_per_critic"] == str(2 * math.ceil(400 / 128))
    assert row["env_id"] == "SafetyHopperVelocity-v1" and row["minibatch_size"] == "64"
    assert row["grad_steps_per_critic"] == str(math.ceil(400 / 64))  # one pass over the 400-sample batch
    for col in ("train_time_s", "reward_mse_train", "cost_mse_train", "reward_mse_heldout", "cost_mse_heldout",
                "reward_mse_init", "cost_mse_init", "reward_return_var", "cost_return_var"):
        assert math.isfinite(float(row[col])) and float(row[col]) >= 0, col
    assert float(row["reward_mse_heldout_vs_ref"]) == 1.0 and row["reference_minibatch"] == "64"
    assert row["nproc"] and row["torch_threads"] == "1" and row["date"]
    md = md_path.read_text()
    assert "| SafetyHopperVelocity-v1 | 64 | 7 |" in md and "400 env steps" in md and "nproc" in md
    assert "| reward MSE held-out |" in capsys.readouterr().out
