"""Hyperparameter sweeps over the fine-tuning job (`ep_sweep.py`), one concern per module.

- `search_space`: validating the `sweep_config` block (wandb's sweep format) and translating it to
  Optuna: samplers' distributions, constants, the grid, the Hyperband settings;
- `setup`: reading the sweep's config file (sweep keys, fine-tuning keys, `base_config`) into a
  validated `SweepSetup`, through config.py's public steps;
- `trial`: one trial, a real `training.run_fine_tuning` run in `<output_dir>/trial-<n>`, shared by
  both backends; it frees its memory before the next trial and turns any error into `TrialFailed`;
- `optuna_backend`: the study in `sweep_storage` (SQLite by default; PostgreSQL or MySQL shared by
  machines), sampler and pruner, this worker's trials, resuming after a crash or Ctrl-C;
- `wandb_backend`: a wandb sweep and agent (`sweep_backend: wandb`);
- `results`: `sweep_results.csv`, `best_config.json`, `sweep.png`, `param_importances.json` and
  the summary table, from the trial records of either backend;
- `cli`: `main`, which loads the setup and runs the configured backend.

Importing this package imports nothing: `--help` and config errors come before Optuna or torch.
Dependencies point one way: cli -> setup, backends; backends -> trial, results, search_space;
setup -> search_space.
"""
