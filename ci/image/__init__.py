"""Stage 2, the image: a Debian base from locked packages (base), the hashed wheelhouse (wheelhouse),
the Bento (bento), `docker build --network none` (build), normalized to a reproducible image (oci),
saved and loaded between CI jobs (archive), and rebuilt from clean state to compare (reproduce)."""
