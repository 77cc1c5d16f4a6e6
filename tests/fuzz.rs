//! Property tests (SPEC section 9): the CSV import and the domain normaliser take any
//! input without panicking, and what they return keeps its promises. 6,000 generated
//! cases per run (`PROPTEST_CASES` changes how many per property).
#![cfg(feature = "ssr")]

use jobdeck::model::JobKind;
use jobdeck::server::error::AppError;
use jobdeck::server::import::{self, Limits};
use jobdeck::server::rows::ColumnMap;
use jobdeck::server::rows::{domain_from, normalize};
use proptest::prelude::*;

const LIMITS: Limits = Limits { max_bytes: 64 * 1024, max_rows: 500, default_concurrency: 5, names_alone: true };

/// Reads a whole file as an upload is read, in one piece.
fn parse(kind: JobKind, bytes: Vec<u8>) -> Result<(), AppError> {
    let (columns, items) = import::parse_whole(kind, bytes.into(), LIMITS)?;
    assert!(!columns.is_empty() && !items.is_empty(), "an accepted file has columns and rows");
    Ok(())
}

/// A refusal is always a 400 or a 413 with a message, never anything else.
fn refused_cleanly(e: &AppError) -> bool {
    matches!(e, AppError::BadInput(m) | AppError::TooLarge(m) if !m.trim().is_empty())
}

/// Text that looks like CSV: cells of letters, quotes, separators, line breaks, markup,
/// formula starts, non-ASCII, with a BOM now and then.
fn csv_like() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop::string::string_regex(r#"[A-Za-z0-9 .@/:<>=+\-"';,\t\r\nÄé中]{0,12}"#).unwrap();
    let row = prop::collection::vec(cell, 1..6).prop_map(|cells| cells.join(","));
    (any::<bool>(), prop::collection::vec(row, 0..12)).prop_map(|(bom, rows)| {
        let mut text = if bom { "\u{feff}".to_string() } else { String::new() };
        text.push_str(&rows.join("\n"));
        text.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_imported_or_refused_with_a_message(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for kind in JobKind::ALL {
            if let Err(e) = parse(kind, bytes.clone()) {
                prop_assert!(refused_cleanly(&e), "{e:?}");
            }
        }
    }

    #[test]
    fn csv_like_text_is_imported_or_refused_with_a_message(bytes in csv_like()) {
        for kind in JobKind::ALL {
            match parse(kind, bytes.clone()) {
                Ok(_) => {}
                Err(e) => prop_assert!(refused_cleanly(&e), "{e:?}"),
            }
        }
    }

    #[test]
    fn the_domain_normaliser_never_panics_and_gives_a_bare_host(text in "\\PC{0,64}") {
        if let Some(domain) = domain_from(&text) {
            prop_assert!(!domain.is_empty());
            prop_assert!(!domain.contains("://") && !domain.contains('/') && !domain.contains('@'), "{domain}");
            prop_assert!(!domain.chars().any(char::is_whitespace), "{domain:?}");
            prop_assert_eq!(domain.to_lowercase(), domain.clone());
            prop_assert!(!domain.starts_with("www."), "{domain}");
        }
    }

    #[test]
    fn any_row_is_normalised_without_panicking(cells in prop::collection::vec("\\PC{0,40}", 0..6)) {
        let headers: Vec<String> =
            ["company", "website", "domain", "email", "notes"].iter().map(|h| h.to_string()).collect();
        let map = ColumnMap::from_headers(&headers);
        let out = normalize(&map, &cells);
        prop_assert!(out.json().is_object());
    }
}
