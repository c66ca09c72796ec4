"""Stage 1, the model: `dvc repro` in locked mode with the DVC remote (repro), the committed dvc.lock
against a fresh run (lock_check), and training on other CPU kernels (cpu_parity)."""
