"""The findings of the completions study, each with an operational test on the stored runs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from factlab.experiments.core.claims import claim as _claim
from factlab.experiments.core.claims import spearman as _spearman


def completions_claims(runs: pd.DataFrame) -> list[dict]:
    """The findings of the completions study, each tested on the joined runs (one row per run,
    with its database's structure and effective ranks). Claims on size and generalization
    use the runs of the longest training length."""
    if runs.empty:
        return [_claim(cid, "-", "no runs", "-", 0, "some runs trained", False)
                for cid in ("artifacts_several_times", "artifacts_more_in_smaller_models",
                            "artifacts_fewer_with_overfitting", "generalization_error_rank_gap")]
    e_max, e_min = runs["epochs"].max(), runs["epochs"].min()
    last = runs[runs["epochs"] == e_max]
    out = []
    med = float(last["artifact_ratio"].median())
    room = float((last["train_prefixes"] / last["train_triples"]).median())  # at most one artifact per prefix
    out.append(_claim(
        "artifacts_several_times", "artifacts_vs_layer",
        "artifacts are common: several times the number of training triples", "several times",
        {"median_ratio": round(med, 3), "mean_ratio": round(float(last["artifact_ratio"].mean()), 3),
         "fraction_of_runs_ratio_ge_2": round(float((last["artifact_ratio"] >= 2).mean()), 3),
         "median_largest_possible_ratio": round(room, 3), "epochs": int(e_max)},
        f"median over runs at {e_max} epochs of artifacts / training triples >= 2", med >= 2))
    rho = _spearman(last["layer_bound"], last["artifacts"])
    mem = last[last["train_tau_accuracy"] >= 1.0]
    rho_mem = _spearman(mem["layer_bound"], mem["artifacts"]) if mem["layer_bound"].nunique() > 1 else float("nan")
    per_layer = last.groupby("layer_bound")["artifact_ratio"].mean()
    out.append(_claim(
        "artifacts_more_in_smaller_models", "artifacts_vs_layer",
        "artifacts are more numerous in smaller (lower rank) models", "more in smaller models",
        {"spearman_layer_bound_artifacts": round(rho, 3), "mean_ratio_per_layer_bound":
            {str(int(k)): round(float(v), 3) for k, v in per_layer.items()},
         "spearman_among_memorizing_runs": None if np.isnan(rho_mem) else round(rho_mem, 3),
         "memorizing_runs": len(mem)},
        f"Spearman correlation of the layer bound (9) and the artifact count over runs at {e_max} epochs < 0",
        rho < 0))
    key = ["db_id", "layer_id"]
    a = runs[runs["epochs"] == e_min].set_index(key)
    b = last.set_index(key)
    both = a.merge(b, left_index=True, right_index=True, suffixes=("_short", "_long"))
    diff = float((both["artifacts_long"] - both["artifacts_short"]).mean()) if len(both) else float("nan")
    by_e = runs.groupby("epochs")[["artifact_ratio", "loss", "train_accuracy"]].mean()
    loss_falls = bool(by_e["loss"].iloc[-1] < by_e["loss"].iloc[0])
    out.append(_claim(
        "artifacts_fewer_with_overfitting", "artifacts_vs_epochs",
        "artifacts are fewer when models overfit (train longer)", "fewer with longer training",
        {"mean_change_in_artifacts": round(diff, 3), "pairs": len(both),
         "fraction_of_pairs_with_fewer": round(float((both["artifacts_long"] < both["artifacts_short"]).mean()), 3),
         "per_epochs": {str(int(e)): {k: round(float(v), 4) for k, v in row.items()} for e, row in by_e.iterrows()}},
        f"same (database, layer, initialisation): mean of artifacts({e_max} epochs) - artifacts({e_min} epochs) < 0, "
        "with the mean training loss lower at the longer length (the models fit their data more closely)",
        loss_falls and diff < 0))
    g = last.dropna(subset=["generalization_error"])
    rho_g = _spearman(g["rank_gap"], g["generalization_error"])
    cut = float(g["rank_gap"].median()) if len(g) else float("nan")
    close, far = g[g["rank_gap"] <= cut], g[g["rank_gap"] > cut]
    out.append(_claim(
        "generalization_error_rank_gap", "generalization_vs_rank_gap",
        "generalization error is lower when the effective rank of train + held-out facts is close to that of "
        "the training facts", "lower error for a small gap",
        {"spearman_gap_error": round(rho_g, 3), "median_gap": cut,
         "mean_error_gap_le_median": round(float(close["generalization_error"].mean()), 3) if len(close) else None,
         "mean_error_gap_gt_median": round(float(far["generalization_error"].mean()), 3) if len(far) else None,
         "runs": len(g), "spearman_per_noise_level": {
             f"{nz:g}": round(_spearman(h["rank_gap"], h["generalization_error"]), 3)
             for nz, h in (g.groupby("noise") if "noise" in g else [])}},
        f"Spearman correlation of the gap eff(train + held out) - eff(train) and the generalization error over "
        f"runs at {e_max} epochs > 0", rho_g > 0))
    return out
