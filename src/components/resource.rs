//! Resources whose server-rendered value the browser reads with the same JSON reader
//! that reads server function answers.
//!
//! Leptos decodes a resource's value with `serde_json::from_str`, while every server
//! function's answer is decoded with `serde_json::from_slice`. Each is compiled
//! separately for every type it reads, so a job, a page of items or a page of jobs,
//! which arrive both ways, would have their whole decoder in the bundle twice.
//! [`JsonBytes`] reads resources from the text's bytes, through the one decoder.

use std::future::Future;

use leptos::prelude::Resource;
use leptos::server::codee::{Decoder, Encoder};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON as Leptos writes it into the page, read back through `from_slice`.
pub struct JsonBytes;

impl<T: Serialize> Encoder<T> for JsonBytes {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(val: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(val)
    }
}

impl<T: DeserializeOwned> Decoder<T> for JsonBytes {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(val: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(val.as_bytes())
    }
}

/// `Resource::new`, decoded with [`JsonBytes`].
#[track_caller]
pub fn resource<T, S, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Resource<T, JsonBytes>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Send + Sync + Clone + PartialEq + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Job, JobKind};

    /// What the server writes into the page comes back whole, markup and all.
    #[test]
    fn values_come_back_as_written() {
        let value: Result<Vec<(JobKind, String)>, String> =
            Ok(vec![(JobKind::Research, "<b>\"quoted\" é</b>".into()), (JobKind::Preprocess, String::new())]);
        let text = <JsonBytes as Encoder<_>>::encode(&value).unwrap();
        let back: Result<Vec<(JobKind, String)>, String> = <JsonBytes as Decoder<_>>::decode(&text).unwrap();
        assert_eq!(back, value);
        let err: Result<Job, serde_json::Error> = <JsonBytes as Decoder<_>>::decode("{\"id\":");
        assert!(err.is_err());
    }
}
