//! Weir bench: see README.md in this folder.
