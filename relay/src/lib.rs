//! Weir relay: see README.md in this folder.
