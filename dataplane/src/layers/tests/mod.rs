//! Tests of layer selection and picture-id rewriting, each part alone and
//! then together through a small simulated forwarder.

mod prop;
mod rewrite;
mod selector_table;
mod sim;
mod structure;
