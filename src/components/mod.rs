//! Small UI parts the pages share.

pub mod progress;
