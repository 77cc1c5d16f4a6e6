//! One file per page.

pub mod accounts;
pub mod dashboard;
pub mod preprocess;
pub mod research;
pub mod signin;
