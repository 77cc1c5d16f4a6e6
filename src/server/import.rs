//! Reading an uploaded CSV into a job and its items (SPEC section 6). The whole file
//! is checked before anything is written, so a bad file leaves nothing behind; then
//! its items are inserted in chunks (see `Service::create_job`).

use bytes::Bytes;

use super::error::AppError;
use super::rows::{self, ColumnMap, ResearchFields};
use super::store::types::{NewItem, NewJob, CHUNK_ROWS};
use crate::model::{JobKind, MAX_CONCURRENCY, MAX_NAME_CHARS, MIN_CONCURRENCY};

/// An upload as both the REST API and the UI hand it over.
#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub name: Option<String>,
    pub concurrency: Option<u32>,
    pub bytes: Bytes,
}

/// The limits an import enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_rows: usize,
    pub default_concurrency: u32,
}

/// Reads the `concurrency` form field: empty means the default; the range is checked
/// at import.
pub fn parse_concurrency(text: &str) -> Result<Option<u32>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| AppError::BadInput(format!("concurrency must be a whole number from 1 to 64, not `{text}`")))
}

/// Picks the delimiter that splits the header line most: comma, semicolon or tab.
pub fn detect_delimiter(bytes: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in bytes {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], std::cmp::Reverse(i))).unwrap_or(0);
    [b',', b';', b'\t'][best]
}

/// The longest file name kept; longer ones are cut.
const MAX_FILENAME_CHARS: usize = 255;
/// The most columns a file may have: exports of real systems stay far below it.
pub const MAX_COLUMNS: usize = 1000;
/// The longest cell an upload may hold (64 KiB): names, websites and notes are far
/// shorter; a longer cell is a broken file or an attack on every page that shows it.
pub const MAX_CELL_BYTES: usize = 64 * 1024;

/// An upload that passed every check: each row is known to import. Nothing has
/// been written yet; [`Checked::chunks`] yields its items for insertion.
pub struct Checked {
    pub job: NewJob,
    pub rows: usize,
    data: Bytes,
    delimiter: u8,
    map: ColumnMap,
}

/// Checks a job name given by a person: trimmed, at most [`MAX_NAME_CHARS`].
pub fn check_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(AppError::BadInput(format!(
            "the name is {chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        )));
    }
    Ok(name.to_string())
}

/// Checks a job's concurrency against the bounds of SPEC section 2.
pub fn check_concurrency(concurrency: i64) -> Result<u32, AppError> {
    if !(i64::from(MIN_CONCURRENCY)..=i64::from(MAX_CONCURRENCY)).contains(&concurrency) {
        return Err(AppError::BadInput(format!(
            "concurrency must be between {MIN_CONCURRENCY} and {MAX_CONCURRENCY}, not {concurrency}"
        )));
    }
    Ok(concurrency as u32)
}

/// Cuts `text` to at most `max` characters.
pub fn cut_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Checks everything about an upload that can be wrong — size, settings, encoding,
/// header, quoting and every row — without touching the database, so a bad file
/// never takes the writer.
pub fn check(kind: JobKind, upload: &Upload, limits: Limits) -> Result<Checked, AppError> {
    if upload.bytes.len() > limits.max_bytes {
        return Err(AppError::TooLarge(format!(
            "the file is {} bytes; the limit is {} bytes",
            upload.bytes.len(),
            limits.max_bytes
        )));
    }
    let concurrency = check_concurrency(i64::from(upload.concurrency.unwrap_or(limits.default_concurrency)))?;
    let given_name = check_name(upload.name.as_deref().unwrap_or(""))?;
    let bytes = &upload.bytes;
    let data = if bytes.starts_with(b"\xEF\xBB\xBF") { bytes.slice(3..) } else { bytes.clone() };
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(AppError::BadInput("the file is empty: a header row and at least one row are needed".into()));
    }
    if let Err(e) = std::str::from_utf8(&data) {
        let line = 1 + data[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        return Err(AppError::BadInput(format!("line {line}: the file is not valid UTF-8 text")));
    }
    let delimiter = detect_delimiter(&data);
    if let Some(line) = unclosed_quote(&data, delimiter) {
        return Err(AppError::BadInput(format!("line {line}: a quoted field is never closed")));
    }
    let mut reader = reader(&data, delimiter);
    let header = reader.headers().map_err(|e| csv_error(&e))?;
    if header.len() > MAX_COLUMNS {
        return Err(AppError::BadInput(format!(
            "line 1: the header has {} columns; at most {MAX_COLUMNS} are allowed",
            header.len()
        )));
    }
    if let Some(long) = header.iter().map(str::len).find(|len| *len > MAX_CELL_BYTES) {
        return Err(AppError::BadInput(format!(
            "line 1: a header cell is {long} bytes long; at most {MAX_CELL_BYTES} are allowed"
        )));
    }
    let mut headers: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    if headers.iter().all(String::is_empty) {
        return Err(AppError::BadInput("line 1: the header row is empty".into()));
    }
    dedupe_headers(&mut headers);
    let map = ColumnMap::from_headers(&headers);
    if kind == JobKind::Research && map.name.is_none() && map.website.is_none() && map.domain.is_none() {
        return Err(AppError::BadInput(format!(
            "line 1: the header has no company name, website or domain column (found: {})",
            cut_chars(&headers.join(", "), 500)
        )));
    }
    let name = if given_name.is_empty() {
        let stem = upload.filename.rsplit_once('.').map_or(upload.filename.as_str(), |(s, _)| s).trim();
        if stem.is_empty() {
            "Untitled job".to_string()
        } else {
            cut_chars(stem, MAX_NAME_CHARS)
        }
    } else {
        given_name
    };
    let filename = match upload.filename.trim() {
        "" => "upload.csv".to_string(),
        f => cut_chars(f, MAX_FILENAME_CHARS),
    };
    let mut checked =
        Checked { job: NewJob { kind, name, filename, concurrency, columns: headers }, rows: 0, data, delimiter, map };
    let rows = checked.count_rows(limits.max_rows)?;
    if rows == 0 {
        return Err(AppError::BadInput("the file has a header row but no rows".into()));
    }
    checked.rows = rows;
    Ok(checked)
}

fn reader(data: &[u8], delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(data)
}

impl Checked {
    /// Reads every row once, so the insert that follows cannot meet a bad one, and
    /// counts them. The rows [`Checked::chunks`] yields, without making items: one
    /// record is reused for every row and nothing is copied; a line number is worked
    /// out only for the row an error names.
    fn count_rows(&self, max_rows: usize) -> Result<usize, AppError> {
        let data: &[u8] = &self.data;
        let width = self.job.columns.len();
        let line_of = |record: &csv::StringRecord| {
            let byte = record_start(data, record).min(data.len());
            1 + memchr::memchr_iter(b'\n', &data[..byte]).count() as i64
        };
        let mut reader = reader(data, self.delimiter);
        let _ = reader.headers();
        let mut record = csv::StringRecord::new();
        let mut rows = 0usize;
        while reader.read_record(&mut record).map_err(|e| csv_error(&e))? {
            if !is_data_row(&record, width, || line_of(&record))? {
                continue;
            }
            rows += 1;
            if rows > max_rows {
                return Err(AppError::TooLarge(format!("the file has more than {max_rows} rows, the limit")));
            }
            if let Some(long) = record.iter().take(width).map(str::len).find(|len| *len > MAX_CELL_BYTES) {
                return Err(AppError::BadInput(format!(
                    "line {}: a cell is {long} bytes long; at most {MAX_CELL_BYTES} are allowed",
                    line_of(&record)
                )));
            }
            if self.job.kind == JobKind::Research && !research_cells(&self.map, |i| record.get(i)) {
                return Err(no_research_cells(line_of(&record)));
            }
        }
        Ok(rows)
    }

    /// The items in chunks of [`CHUNK_ROWS`], for inserting one chunk per transaction:
    /// the data rows with their physical line numbers, blank rows skipped, never wider
    /// than the header. Empty trailing cells are left out (readers fill them in), so a
    /// wide header over short rows costs nothing per row. One record is reused for
    /// every row; an item's cells are copied once, into its stored input.
    pub fn chunks(&self) -> impl Iterator<Item = Result<Vec<NewItem>, AppError>> + '_ {
        let data: &[u8] = &self.data;
        let width = self.job.columns.len();
        let mut reader = reader(data, self.delimiter);
        // The header was read once already; reading it again positions the reader.
        let _ = reader.headers();
        let mut record = csv::StringRecord::new();
        // Physical line of each record's start, counted from byte offsets so that quoted
        // newlines in earlier rows count too (what an editor shows).
        let mut counted = (0usize, 1i64);
        let mut line_at = move |byte: usize| {
            let (from, line) = counted;
            let newlines = data.get(from..byte).map_or(0, |s| memchr::memchr_iter(b'\n', s).count());
            counted = (byte, line + newlines as i64);
            counted.1
        };
        let mut done = false;
        let mut next_item = move |record: &csv::StringRecord| -> Option<Result<NewItem, AppError>> {
            let line = line_at(record_start(data, record));
            match is_data_row(record, width, || line) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
            let mut cells: Vec<&str> = record.iter().collect();
            let used = cells.iter().rposition(|v| !v.is_empty()).map_or(0, |i| i + 1);
            cells.truncate(used.min(width));
            Some(new_item(self.job.kind, &self.map, line, &cells))
        };
        std::iter::from_fn(move || {
            let mut chunk = Vec::with_capacity(CHUNK_ROWS.min(self.rows));
            while !done && chunk.len() < CHUNK_ROWS {
                let item = match reader.read_record(&mut record) {
                    Ok(true) => next_item(&record),
                    Ok(false) => {
                        done = true;
                        None
                    }
                    Err(e) => Some(Err(csv_error(&e))),
                };
                match item {
                    Some(Ok(item)) => chunk.push(item),
                    Some(Err(e)) => {
                        done = true;
                        return Some(Err(e));
                    }
                    None => {}
                }
            }
            (!chunk.is_empty()).then_some(Ok(chunk))
        })
    }
}

/// Where a record starts: its position can sit on the line break before it (CRLF,
/// blank lines).
fn record_start(data: &[u8], record: &csv::StringRecord) -> usize {
    let mut byte = record.position().map_or(0, |p| p.byte() as usize);
    while matches!(data.get(byte), Some(b'\r' | b'\n')) {
        byte += 1;
    }
    byte
}

/// Whether a record is a row of data: `false` for a blank one, which is skipped; an
/// error, on the line `line` gives, for one with cells beyond the header's width.
fn is_data_row(record: &csv::StringRecord, width: usize, line: impl FnOnce() -> i64) -> Result<bool, AppError> {
    if record.iter().all(|v| v.trim().is_empty()) {
        return Ok(false);
    }
    if record.len() > width && !record.iter().skip(width).all(|v| v.trim().is_empty()) {
        return Err(AppError::BadInput(format!(
            "line {}: the row has {} fields but the header has {width}",
            line(),
            record.len()
        )));
    }
    Ok(true)
}

/// A research row needs a name, a website or a domain (or an e-mail address to take
/// the domain from); `get` reads a cell by column.
fn research_cells<'a>(map: &ColumnMap, get: impl Fn(usize) -> Option<&'a str>) -> bool {
    let filled = |index: Option<usize>| index.and_then(&get).map(str::trim).filter(|s| !s.is_empty());
    filled(map.name).is_some()
        || filled(map.website).is_some()
        || filled(map.domain).is_some()
        || filled(map.email).and_then(rows::domain_from).is_some()
}

fn no_research_cells(line: i64) -> AppError {
    AppError::BadInput(format!("line {line}: the row has neither a company name nor a website or domain"))
}

fn new_item(kind: JobKind, map: &ColumnMap, line: i64, cells: &[&str]) -> Result<NewItem, AppError> {
    let input = serde_json::to_string(cells).map_err(|e| AppError::Internal(e.to_string()))?;
    match kind {
        JobKind::Research => {
            let ResearchFields { name, website, domain } = map.research_fields(cells);
            if name.is_none() && website.is_none() && domain.is_none() {
                return Err(no_research_cells(line));
            }
            Ok(NewItem { line, name, website, domain, input, normalized: None, dedupe_key: None })
        }
        JobKind::Preprocess => {
            let values: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
            let n = rows::normalize(map, &values);
            let normalized = serde_json::to_string(&n.json).map_err(|e| AppError::Internal(e.to_string()))?;
            Ok(NewItem {
                line,
                name: n.name,
                website: n.website,
                domain: n.domain,
                input,
                normalized: Some(normalized),
                dedupe_key: n.dedupe_key,
            })
        }
    }
}

/// The line where a quoted field opens and never closes, if any. Quotes count only at
/// the start of a field, as in CSV; a stray `"` inside a plain field is just a character.
/// It jumps from quote to quote (`memchr`) instead of looking at every byte: a file
/// without quotes is one search, and a line is counted only for the answer.
fn unclosed_quote(data: &[u8], delimiter: u8) -> Option<i64> {
    // Outside quotes, from `from` on; `at_start` is whether a field starts at `from`.
    let (mut from, mut at_start) = (0usize, true);
    while let Some(found) = memchr::memchr(b'"', &data[from..]) {
        let quote = from + found;
        // A field starts here if only `\r`s stand between the quote and a delimiter, a
        // line break, or the start of this stretch (when a field started there).
        let before = data[from..quote].iter().rposition(|&b| b != b'\r');
        let opens = match before {
            Some(i) => matches!(data[from + i], b'\n') || data[from + i] == delimiter,
            None => at_start,
        };
        if !opens {
            // A quote inside a plain field: the field goes on.
            from = quote + 1;
            at_start = false;
            continue;
        }
        // Inside quotes: `""` is a quote character; a lone `"` closes the field.
        let mut at = quote + 1;
        loop {
            let Some(next) = memchr::memchr(b'"', &data[at..]) else {
                return Some(1 + memchr::memchr_iter(b'\n', &data[..quote]).count() as i64);
            };
            let close = at + next;
            if data.get(close + 1) == Some(&b'"') {
                at = close + 2;
            } else {
                from = close + 1;
                at_start = false;
                break;
            }
        }
    }
    None
}

/// Repeated header names get a number so every column keeps its own key.
fn dedupe_headers(headers: &mut [String]) {
    let mut taken = std::collections::HashSet::new();
    for (i, header) in headers.iter_mut().enumerate() {
        if header.is_empty() {
            *header = format!("column {}", i + 1);
        }
        let base = header.clone();
        let mut n = 2;
        while !taken.insert(header.clone()) {
            *header = format!("{base} ({n})");
            n += 1;
        }
    }
}

fn csv_error(e: &csv::Error) -> AppError {
    let line = e.position().map(|p| p.line());
    let what = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "the file is not valid UTF-8 text".to_string(),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("the row has {len} fields but the header has {expected_len}")
        }
        _ => format!("the CSV cannot be read: {e}"),
    };
    match line {
        Some(line) => AppError::BadInput(format!("line {line}: {what}")),
        None => AppError::BadInput(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn headers_map_by_synonym_and_case() {
        let m = ColumnMap::from_headers(&h(&["Account Name", "Homepage", "E-Mail", "Notes"]));
        assert_eq!(m, ColumnMap { name: Some(0), website: Some(1), domain: None, email: Some(2) });
        let m = ColumnMap::from_headers(&h(&["id", "ORGANIZATION", "company_domain", "Website URL"]));
        assert_eq!(m, ColumnMap { name: Some(1), website: Some(3), domain: Some(2), email: None });
        let m = ColumnMap::from_headers(&h(&["foo", "bar"]));
        assert_eq!(m, ColumnMap::default());
    }

    #[test]
    fn delimiter_is_detected_outside_quotes() {
        assert_eq!(detect_delimiter(b"a,b,c\n1,2,3"), b',');
        assert_eq!(detect_delimiter(b"a;b;c\n1;2;3"), b';');
        assert_eq!(detect_delimiter(b"a\tb\n1\t2"), b'\t');
        assert_eq!(detect_delimiter(b"\"x,y,z\";b;c\n"), b';');
        assert_eq!(detect_delimiter(b"single\n1"), b',');
    }

    #[test]
    fn only_a_quote_that_opens_a_field_must_close() {
        assert_eq!(unclosed_quote(b"a,b\n\"x,y\n", b','), Some(2));
        assert_eq!(unclosed_quote(b"a,b\nAcme 5\" TV,y\n", b','), None);
        assert_eq!(unclosed_quote(b"a,b\n\"say \"\"hi\"\"\nthere\",y\n", b','), None);
        assert_eq!(unclosed_quote(b"a;b\nx;\"open\n", b';'), Some(2));
    }

    /// The rule of [`unclosed_quote`] stated byte by byte, as plainly as it goes.
    fn unclosed_quote_bytewise(data: &[u8], delimiter: u8) -> Option<i64> {
        let (mut line, mut open_line) = (1i64, 0i64);
        let (mut quoted, mut field_start) = (false, true);
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            if quoted {
                if b == b'"' {
                    if data.get(i + 1) == Some(&b'"') {
                        i += 1;
                    } else {
                        quoted = false;
                    }
                } else if b == b'\n' {
                    line += 1;
                }
            } else if b == b'"' && field_start {
                quoted = true;
                open_line = line;
                field_start = false;
            } else if b == b'\n' {
                line += 1;
                field_start = true;
            } else if b == delimiter {
                field_start = true;
            } else if b != b'\r' {
                field_start = false;
            }
            i += 1;
        }
        quoted.then_some(open_line)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// The quote-to-quote search answers as the byte-by-byte rule does.
        #[test]
        fn unclosed_quote_follows_the_bytewise_rule(
            bytes in proptest::collection::vec(proptest::sample::select(b"a;,\"\n\r ".to_vec()), 0..48),
            semicolon in proptest::bool::ANY,
        ) {
            let delimiter = if semicolon { b';' } else { b',' };
            proptest::prop_assert_eq!(unclosed_quote(&bytes, delimiter), unclosed_quote_bytewise(&bytes, delimiter));
        }
    }

    #[test]
    fn repeated_headers_stay_distinct() {
        let mut v = h(&["name", "name", "", "name"]);
        dedupe_headers(&mut v);
        assert_eq!(v, h(&["name", "name (2)", "column 3", "name (3)"]));
        // A header of one name repeated to the column limit stays quick to rename.
        let mut many = vec!["a".to_string(); MAX_COLUMNS];
        dedupe_headers(&mut many);
        assert_eq!(many.iter().collect::<std::collections::HashSet<_>>().len(), MAX_COLUMNS);
        assert_eq!(many[MAX_COLUMNS - 1], format!("a ({MAX_COLUMNS})"));
    }

    fn limits() -> Limits {
        Limits { max_bytes: 1 << 20, max_rows: 1000, default_concurrency: 2 }
    }

    fn upload(bytes: &[u8]) -> Upload {
        Upload { filename: "a.csv".into(), name: None, concurrency: None, bytes: Bytes::copy_from_slice(bytes) }
    }

    #[test]
    fn a_header_over_the_column_limit_is_refused() {
        let header = (0..=MAX_COLUMNS).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        let err = check(JobKind::Preprocess, &upload(format!("{header}\nx\n").as_bytes()), limits()).err().unwrap();
        assert!(err.to_string().contains("1001 columns"), "{err}");
    }

    #[test]
    fn short_rows_under_a_wide_header_are_stored_short() {
        let header = (1..MAX_COLUMNS).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        let file = format!("company,{header}\nAcme\nBeta,,x\n");
        let checked = check(JobKind::Research, &upload(file.as_bytes()), limits()).unwrap();
        let items: Vec<NewItem> = checked.chunks().flat_map(|c| c.unwrap()).collect();
        assert_eq!(items[0].input, r#"["Acme"]"#);
        assert_eq!(items[1].input, r#"["Beta","","x"]"#);
    }

    /// Items come in chunks of [`CHUNK_ROWS`] with the line each row starts on, counted
    /// past quoted line breaks, CRLF and blank lines, and with their cells as given.
    #[test]
    fn chunks_carry_each_rows_line_and_cells_across_chunk_boundaries() {
        let mut file = String::from("Company,Notes\r\n");
        let mut expected = Vec::new();
        let mut line = 2i64;
        for i in 0..CHUNK_ROWS + 7 {
            if i % 1000 == 0 {
                file.push_str("\r\n");
                line += 1;
            }
            if i % 700 == 0 {
                file.push_str(&format!("\"Acme {i}\",\"two\nlines\"\r\n"));
                expected.push((line, format!(r#"["Acme {i}","two\nlines"]"#), Some(format!("Acme {i}"))));
                line += 2;
            } else {
                file.push_str(&format!("  Beta {i} ,\r\n"));
                expected.push((line, format!(r#"["  Beta {i} "]"#), Some(format!("Beta {i}"))));
                line += 1;
            }
        }
        let limits = Limits { max_bytes: 1 << 24, max_rows: 10 * CHUNK_ROWS, default_concurrency: 2 };
        let checked = check(JobKind::Research, &upload(file.as_bytes()), limits).unwrap();
        let chunks: Vec<Vec<NewItem>> = checked.chunks().map(Result::unwrap).collect();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [CHUNK_ROWS, 7]);
        let got: Vec<_> = chunks.into_iter().flatten().map(|it| (it.line, it.input, it.name)).collect();
        assert_eq!(got.len(), expected.len());
        for (got, want) in got.iter().zip(&expected) {
            assert_eq!(got, want);
        }
    }
}
