//! Small UI parts the pages share.

pub mod activity;
pub mod badge;
pub mod browser_notify;
pub mod concurrency;
pub mod confirm_dialog;
pub mod erase;
pub mod format;
pub mod items;
pub mod job_controls;
pub mod job_loader;
pub mod live;
pub mod live_page;
pub mod page_title;
pub mod progress;
pub mod resource;
pub mod schedule;
pub mod status_banner;
pub mod upload_form;
