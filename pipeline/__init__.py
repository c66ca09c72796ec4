"""The DVC training pipeline: prepare -> train -> evaluate -> package.

Each stage is a module with a pure, documented function that the tests call directly and a thin
`main()` that `dvc repro` runs (`python -m pipeline.<stage>`). Settings come from `params.yaml`;
artifact paths from `pipeline.artifacts`.
"""
