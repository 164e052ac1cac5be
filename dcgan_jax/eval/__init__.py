"""Scoring generated faces: SWD, and FID, KID and IS through pytorch-fid's Inception."""
