//! Input rules of SPEC section 6: good files of both kinds import whole; every bad
//! file is refused with its line and problem and leaves the database unchanged.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use jobdeck::model::{JobKind, JobStatus};
use jobdeck::server::error::AppError;
use jobdeck::server::import::Upload;
use jobdeck::server::service::Service;

/// Rows in every table, to prove a refused upload wrote nothing.
fn table_rows(db: &std::path::Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    ["processing_jobs", "accounts", "preprocessing_jobs", "preprocessing_results"]
        .iter()
        .map(|t| conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0)).unwrap())
        .collect()
}

async fn paused_service(dir: &std::path::Path) -> Service {
    // No runner start: these tests look at what import wrote, not at processing.
    state(names_alone(test_config(dir))).service
}

fn up(bytes: &[u8]) -> Upload {
    Upload { filename: "list.csv".into(), name: None, concurrency: None, bytes: bytes.to_vec().into() }
}

#[tokio::test]
async fn good_research_files_import_whole() {
    let dir = tempfile::tempdir().unwrap();
    let service = paused_service(dir.path()).await;
    let cases: [(&[u8], i64); 5] = [
        (b"\xEF\xBB\xBFCompany,Website\nAcme,https://acme.com\nGlobex,globex.com\n", 2),
        (b"Account Name;Domain;Notes\nAcme;acme.com;\"a; b\"\nInitech;initech.io;x\n", 2),
        (b"Organization\tURL\nAcme\thttps://acme.com/x\n", 1),
        (b"Company,Notes\r\n\"Acme, Inc.\",\"line one\nline two\"\r\nGlobex,\r\n", 2),
        (b"Website\nhttps://a.example\n\n,\nhttps://b.example\n", 2),
    ];
    for (bytes, rows) in cases {
        let job = service.create_job(JobKind::Research, up(bytes)).await.unwrap();
        assert_eq!(
            (job.total, job.pending, job.status),
            (rows, rows, JobStatus::Pending),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(job.name, "list");
        assert_eq!(job.concurrency, 5);
    }
    // The quoted newline stayed inside its field, the comma inside its quotes.
    let jobs = service.list(JobKind::Research).await.unwrap();
    let quoted = jobs.iter().find(|j| j.total == 2 && j.id == 4).unwrap();
    let items = service.items(JobKind::Research, quoted.id, None, 0, 10).await.unwrap().items;
    assert_eq!(items[0].name.as_deref(), Some("Acme, Inc."));
    assert_eq!(items[0].input["Notes"], "line one\nline two");
    assert_eq!(items[1].line, 4, "lines count the file's physical lines");
}

#[tokio::test]
async fn a_good_preprocessing_file_keeps_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let service = paused_service(dir.path()).await;
    let bytes = b"Company Name,Website,Owner,Email\nAcme Inc.,www.acme.com,Ann,ann@acme.com\n,,,\nNobody,,Bo,\n";
    let job = service
        .create_job(JobKind::Preprocess, Upload { name: Some("CRM export".into()), concurrency: Some(3), ..up(bytes) })
        .await
        .unwrap();
    assert_eq!((job.total, job.name.as_str(), job.concurrency), (2, "CRM export", 3));
    let items = service.items(JobKind::Preprocess, job.id, None, 0, 10).await.unwrap().items;
    assert_eq!(items[0].input.keys().collect::<Vec<_>>(), ["Company Name", "Website", "Owner", "Email"]);
    assert_eq!(items[0].input["Owner"], "Ann");
    assert_eq!(items[0].result.as_ref().unwrap()["company"], "Acme");
    assert_eq!(items[1].result.as_ref().unwrap()["valid"], false);
}

#[tokio::test]
async fn bad_files_are_refused_with_line_and_reason_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let service = paused_service(dir.path()).await;
    let cases: Vec<(JobKind, Upload, &str)> = vec![
        (JobKind::Research, up(b""), "empty"),
        (JobKind::Research, up(b"\n\n"), "empty"),
        (JobKind::Research, up(b"Company,Website\n"), "no rows"),
        (
            JobKind::Research,
            up(b"Notes,Owner\nhello,Ann\n"),
            "line 1: the header has no company name, website or domain",
        ),
        (JobKind::Research, up(b"Company,Website,Notes\nAcme,acme.com,\n,,\n,,hello\n"), "line 4: the row has neither"),
        (JobKind::Research, up(b"Company,Website\nAcme,acme.com\n , ,notes\n"), "line 3"),
        (
            JobKind::Research,
            up(b"Company,Website\nAcme,acme.com\nBad\xFF\xFE,x.com\n"),
            "line 3: the file is not valid UTF-8",
        ),
        (
            JobKind::Research,
            up(b"Company,Website\nAcme,acme.com\n\"unterminated,x\n"),
            "line 3: a quoted field is never closed",
        ),
        (
            JobKind::Research,
            Upload { concurrency: Some(0), ..up(b"Company\nAcme\n") },
            "concurrency must be between 1 and 64",
        ),
        (
            JobKind::Research,
            Upload { concurrency: Some(65), ..up(b"Company\nAcme\n") },
            "concurrency must be between 1 and 64",
        ),
        (JobKind::Preprocess, up(b"Company,b\n1,2,3\n"), "line 2: the row has 3 fields but the header has 2"),
        // A file no row of which could work is refused at its header (SPEC section 16).
        (JobKind::Preprocess, up(b"foo,bar,baz\n1,2,3\n"), "columns found: foo, bar, baz"),
        // Lines as an editor counts them: a quoted cell's line breaks, CRLF and blank
        // lines before the bad row all count.
        (
            JobKind::Research,
            up(b"Company,Notes\r\nAcme,\"two\r\nlines\"\r\n\r\n\r\n,\"only notes\"\r\n"),
            "line 6: the row has neither",
        ),
        (
            JobKind::Preprocess,
            up(b"Company,b\n\"x\ny\",2\n\n1,2,3\n"),
            "line 5: the row has 3 fields but the header has 2",
        ),
        // A quote inside a plain cell is text; one that opens a later cell must close.
        (
            JobKind::Research,
            up(b"Company,Notes\nAcme 5\" TV,ok\nBeta,\"say \"\"hi\"\"\nthere\"\nGamma,\"open\n"),
            "line 5: a quoted field is never closed",
        ),
        (JobKind::Preprocess, up(b"Company\n"), "no rows"),
        // A NUL byte is valid UTF-8 but no database keeps it in text: a file saved as
        // UTF-16 is full of them.
        (JobKind::Preprocess, up(b"Company,Notes\nAcme,ok\nBeta,a\0b\n"), "line 3: the file holds a NUL byte"),
        (JobKind::Research, up(b"C\0o\0m\0p\0a\0n\0y\0\n\0A\0\n\0"), "line 1: the file holds a NUL byte"),
        (
            JobKind::Research,
            up(format!("Company,Notes\n\"Acme\nAnvils\",x\nBeta,{}\n", "A".repeat(70_000)).as_bytes()),
            "line 4: a cell is 70000 bytes long",
        ),
    ];
    for (kind, upload, expected) in cases {
        let shown = String::from_utf8_lossy(&upload.bytes).to_string();
        let err = service.create_job(kind, upload).await.expect_err(&shown);
        assert_eq!(err.status_code(), 400, "{shown}: {err}");
        assert!(err.to_string().contains(expected), "{shown}: `{err}` should contain `{expected}`");
        assert_eq!(table_rows(&db), [0, 0, 0, 0], "{shown} left rows behind");
    }
}

#[tokio::test]
async fn size_and_row_limits_answer_413_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let mut config = names_alone(test_config(dir.path()));
    config.server.max_rows = 3;
    config.server.max_upload_bytes = 200;
    let service = state(config).service;
    let err = service.create_job(JobKind::Research, up(b"Company\na\nb\nc\nd\n")).await.unwrap_err();
    assert!(matches!(err, AppError::TooLarge(_)));
    assert!(err.to_string().contains("more than 3 rows"));
    let big = format!("Company\n{}", "x\n".repeat(150));
    let err = service.create_job(JobKind::Research, up(big.as_bytes())).await.unwrap_err();
    assert_eq!(err.status_code(), 413);
    assert_eq!(table_rows(&db), [0, 0, 0, 0]);
    // Exactly at the row limit is fine.
    let job = service.create_job(JobKind::Research, up(b"Company\na\nb\nc\n")).await.unwrap();
    assert_eq!(job.total, 3);
}

/// A file is read as it arrives and written a chunk at a time: a bad row far into it,
/// after many chunks went in, still leaves nothing, by the time the error is answered.
#[tokio::test]
async fn a_bad_row_far_into_a_long_file_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let service = paused_service(dir.path()).await;
    let good = 23_456;
    for kind in JobKind::ALL {
        let mut file = String::from("Company,Website\n");
        for i in 0..good {
            file.push_str(&format!("Company {i},https://c{i}.example\n"));
        }
        file.push_str("Acme,acme.com,surplus\n");
        let err = service.create_job(kind, up(file.as_bytes())).await.unwrap_err();
        let line = good + 2;
        assert_eq!(err.to_string(), format!("line {line}: the row has 3 fields but the header has 2"));
        assert_eq!(table_rows(&db), [0, 0, 0, 0], "{kind:?} left rows behind");
    }
    // A quote that never closes is known only at the end of the file.
    let mut file = String::from("Company,Notes\n");
    for i in 0..good {
        file.push_str(&format!("Company {i},x\n"));
    }
    file.push_str("Last,\"open\nand more\n");
    let err = service.create_job(JobKind::Research, up(file.as_bytes())).await.unwrap_err();
    assert_eq!(err.to_string(), format!("line {}: a quoted field is never closed", good + 2));
    assert_eq!(table_rows(&db), [0, 0, 0, 0]);
    // Past the row limit, however far in, is a 413 that leaves nothing.
    let mut config = names_alone(test_config(dir.path()));
    config.server.db = dir.path().join("limit.sqlite3");
    config.server.max_rows = 12_000;
    let limited = state(config).service;
    let err = limited.create_job(JobKind::Preprocess, up(file.as_bytes())).await.unwrap_err();
    assert_eq!(err.status_code(), 413, "{err}");
    assert_eq!(table_rows(&dir.path().join("limit.sqlite3")), [0, 0, 0, 0]);
}

/// A row that runs on without end (a quote never closed in a huge file) is refused at
/// a fixed length, naming where the quote opened, instead of being held whole.
#[tokio::test]
async fn a_row_without_end_is_refused_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobdeck.sqlite3");
    let mut config = names_alone(test_config(dir.path()));
    config.server.max_upload_bytes = 16 * 1024 * 1024;
    let service = state(config).service;
    let mut file = String::from("Company,Notes\nAcme,\"opens here\n");
    file.push_str(&"more text, never closed\n".repeat(250_000));
    let err = service.create_job(JobKind::Research, up(file.as_bytes())).await.unwrap_err();
    assert_eq!(err.status_code(), 400);
    let text = err.to_string();
    assert!(text.starts_with("line 2: the row is longer than 4 MiB"), "{text}");
    assert!(text.contains("opened on line 2"), "{text}");
    assert_eq!(table_rows(&db), [0, 0, 0, 0]);
}
