//! Weir loadgen: see README.md in this folder.
